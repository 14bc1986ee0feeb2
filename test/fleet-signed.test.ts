/**
 * Signed patch sets in a fleet (real etcd, LIVEPATCH_TEST_ETCD): members that require signatures
 * (LIVEPATCH_TRUSTED_KEYS) apply the agent's signature policy to sets that reach them through etcd,
 * exactly as to an operator's apply. An unsigned rollout fails at stage (nothing committed, the refusal
 * audited); a set signed by the trusted key commits on every member; a member that trusts another key
 * joins diverged instead of serving the fleet's set.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { dropFleet, ETCD, memberCount, rawEtcd, requireEtcd, skipWithoutEtcd, uniqueFleet, waitFor } from './helpers/etcd';
import { QUOTE_PATCH } from './cli-fleet-fixture';

const skip = skipWithoutEtcd;
const NAME = uniqueFleet('signed');
const url = () => `etcd://${ETCD}/${NAME}`;
const PREFIX = `livepatch/fleets/${NAME}/`;
const SLOW = { timeoutMs: 200_000 };

let project: Project;
let tokens: Tokens;
const apps: AppProcess[] = [];
let etcd: ReturnType<typeof rawEtcd>;

let audits = 0;
const auditFiles = new Map<AppProcess, string>();

/** Start a fleet member that trusts the keys in `trusted`, with an audit log of its own. */
async function member(trusted: string): Promise<AppProcess> {
  const audit = join(project.root, `audit-${++audits}.jsonl`);
  const app = await startApp(project.root, { env: { ...fleetEnv(trusted), LIVEPATCH_AUDIT: audit } });
  auditFiles.set(app, audit);
  return app;
}

const fleetEnv = (trusted: string): Record<string, string> => ({
  LIVEPATCH_TOKENS: tokens.file,
  LIVEPATCH_FLEET: url(),
  LIVEPATCH_FLEET_LEASE_TTL: '2',
  LIVEPATCH_TRUSTED_KEYS: join(project.root, trusted),
});

async function tagOf(app: AppProcess): Promise<string> {
  return (await app.get('/mix')).b;
}

const members = () => memberCount(etcd, PREFIX);

function auditOf(app: AppProcess): { op: string; outcome: string; signer?: { keyId: string; name?: string } }[] {
  return readFileSync(auditFiles.get(app)!, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

let ciKeyId = '';

before(async () => {
  if (skip) return;
  requireEtcd();
  etcd = rawEtcd();
  project = createProject();
  tokens = createTokens(project.root);
  project.write('fix/src/quote.ts', QUOTE_PATCH);
  for (const [dir, name] of [
    ['keys-ci', 'ci-release'],
    ['keys-other', 'other'],
  ] as const) {
    const r = await runCli(['keygen', '--out', dir, '--name', name, '--json'], { cwd: project.root });
    assert.equal(r.code, 0, r.stderr);
    if (name === 'ci-release') ciKeyId = JSON.parse(r.stdout).keyId;
  }
  writeFileSync(join(project.root, 'trusted-ci'), readFileSync(join(project.root, 'keys-ci', 'livepatch-signing.pub')));
  writeFileSync(join(project.root, 'trusted-other'), readFileSync(join(project.root, 'keys-other', 'livepatch-signing.pub')));
  for (let i = 0; i < 2; i++) apps.push(await member('trusted-ci'));
  await waitFor('two members', async () => (await members()) === 2);
});

after(async () => {
  for (const a of apps) await a.stop();
  await dropFleet(etcd, PREFIX);
  project?.cleanup();
});

test('an unsigned set through etcd is refused at stage by members that require signatures; nothing commits', { skip }, async () => {
  const r = await runCli(['apply', url(), 'fix/src/quote.ts', '--root', 'fix', '--deadline', '180000', '--json'], {
    ...SLOW,
    cwd: project.root,
  });
  assert.equal(r.code, 1, r.stderr + r.stdout);
  const j = JSON.parse(r.stdout);
  assert.equal(j.committed, false);
  assert.equal(j.error.code, 'LP_ERR_FLEET_STAGE_FAILED');
  assert.ok(
    j.members.some((m: { state: string }) => m.state === 'failed'),
    JSON.stringify(j.members),
  );
  for (const a of apps) assert.equal(await tagOf(a), 'B1');
  assert.equal((await etcd.get(`${PREFIX}head`).string()) ?? '0', '0');
  await waitFor('the refusal in the audit logs', async () =>
    apps.every((a) => auditOf(a).some((e) => e.op === 'fleet-stage' && e.outcome === 'LP_ERR_PATCH_UNSIGNED')),
  );
});

test('a set signed by the trusted key commits on every member, with its signer', { skip }, async () => {
  const s = await runCli(
    [
      'sign',
      'fix/src/quote.ts',
      '--root',
      'fix',
      '--key',
      'keys-ci/livepatch-signing.key',
      '--id',
      'fix-b2',
      '-m',
      'B2',
      '--base-dir',
      '.',
      '--out',
      'set.json',
    ],
    { cwd: project.root },
  );
  assert.equal(s.code, 0, s.stderr);
  const r = await runCli(['apply', url(), 'set.json', '--deadline', '180000', '--json'], { ...SLOW, cwd: project.root });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.equal(JSON.parse(r.stdout).committed, true);
  for (const a of apps) assert.equal(await tagOf(a), 'B2');
  const h = await runCli(['history', apps[0]!.agent!, '--json'], { env: { LIVEPATCH_TOKEN: tokens.read } });
  assert.equal(h.code, 0, h.stderr);
  const last = JSON.parse(h.stdout).at(-1);
  assert.equal(last.signer?.keyId, ciKeyId, JSON.stringify(last));
});

test('a member that does not trust the fleet set’s key joins diverged and serves its deployed code', { skip }, async () => {
  const other = await member('trusted-other');
  try {
    assert.equal(await tagOf(other), 'B1');
    assert.match(other.stderr(), /LP_ERR_FLEET_JOIN.*LP_ERR_PATCH_BAD_SIGNATURE/);
    // A member that trusts the key joins patched.
    const good = await member('trusted-ci');
    apps.push(good);
    assert.equal(await tagOf(good), 'B2');
  } finally {
    await other.stop();
  }
});
