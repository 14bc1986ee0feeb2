/**
 * Fleets in a real etcd (LIVEPATCH_TEST_ETCD, see test/helpers/etcd.ts): three agents (child processes)
 * join one fleet; `livepatch apply etcd://.../NAME` commits on all three; a fourth agent started
 * afterwards serves the patched code from its first request; a client killed between stage and commit
 * leaves nothing committed and the rollout aborted at its deadline; an agent whose stage fails (another
 * build) makes the whole apply fail with nothing committed; a canary of one whose check fails is rolled
 * back while the others never commit; status flags a member that differs; fleet rollback and history.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { dropFleet, ETCD, memberCount, rawEtcd, requireEtcd, skipWithoutEtcd, uniqueFleet, waitFor } from './helpers/etcd';
import { launch } from '../testkit/launch';
import { QUOTE_B, QUOTE_PATCH, RATES_B } from './cli-fleet-fixture';

const skip = skipWithoutEtcd;
const NAME = uniqueFleet('t3');
const url = () => `etcd://${ETCD}/${NAME}`;
const PREFIX = `livepatch/fleets/${NAME}/`;
// Applies run with generous deadlines (and CLI timeouts): a loaded CI machine may stage slowly, and these
// tests are about the logic, not the speed.
const SLOW = { cwd: '', timeoutMs: 200_000 };
const PATCH_B3 = QUOTE_PATCH.replace("'B2'", "'B3'");
const PATCH_B4 = QUOTE_PATCH.replace("'B2'", "'B4'");

let project: Project;
let tokens: Tokens;
const apps: AppProcess[] = [];
let etcd: ReturnType<typeof rawEtcd>;

function fleetEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_FLEET: url(), LIVEPATCH_FLEET_LEASE_TTL: '2', ...extra };
}

async function tagOf(app: AppProcess): Promise<string> {
  try {
    return (await app.get('/mix')).b;
  } catch {
    return (await app.get('/mix')).b;
  }
}

const members = () => memberCount(etcd, PREFIX);

async function generationOf(app: AppProcess): Promise<number> {
  const r = await runCli(['status', app.agent!, '--json'], { env: { LIVEPATCH_TOKEN: tokens.read } });
  return JSON.parse(r.stdout).currentGeneration;
}

async function status(): Promise<any> {
  const r = await runCli(['status', url(), '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

before(async () => {
  if (skip) return;
  requireEtcd();
  etcd = rawEtcd();
  project = createProject();
  tokens = createTokens(project.root);
  project.write('fix/src/quote.ts', QUOTE_PATCH);
  project.write('fix3/src/quote.ts', PATCH_B3);
  project.write('fix4/src/quote.ts', PATCH_B4);
  for (let i = 0; i < 3; i++) apps.push(await startApp(project.root, { env: fleetEnv() }));
  await waitFor('three members', async () => (await members()) === 3);
});

after(async () => {
  for (const a of apps) await a.stop();
  await dropFleet(etcd, PREFIX);
  project?.cleanup();
});

test('a fleet apply through etcd commits on all three members', { skip }, async () => {
  const r = await runCli(['apply', url(), 'fix/src/quote.ts', '--root', 'fix', '--id', 'fix-b2', '--deadline', '180000', '--json'], {
    ...SLOW,
    cwd: project.root,
  });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const j = JSON.parse(r.stdout);
  assert.equal(j.ok, true);
  assert.equal(j.committed, true);
  assert.equal(j.generation, 1);
  assert.deepEqual(
    j.members.map((m: { state: string }) => m.state),
    ['committed', 'committed', 'committed'],
  );
  for (const a of apps) assert.equal(await tagOf(a), 'B2');
  const s = await status();
  assert.equal(s.generation, 1);
  assert.equal(s.members.length, 3);
  assert.equal(s.ok, true, JSON.stringify(s.members.map((m: { flags: string[] }) => m.flags)));
});

test('a fourth agent started afterwards serves the patched code from its first request', { skip }, async () => {
  const d = await startApp(project.root, { env: fleetEnv() });
  apps.push(d);
  // The first request this app ever serves: requests were held until the fleet's patch was applied.
  assert.equal(await tagOf(d), 'B2');
  assert.match(d.stderr(), /joined at fleet generation 1: 1 patch set\(s\) applied/);
  await waitFor('four members', async () => (await members()) === 4);
  const s = await status();
  assert.equal(s.ok, true, JSON.stringify(s.members));
  assert.ok(s.members.every((m: { fleetGeneration: number }) => m.fleetGeneration === 1));
});

test('killing the client between stage and commit: nothing commits, the deadline aborts the rollout', { skip }, async () => {
  const gens = await Promise.all(apps.map(generationOf));
  await using apply = await launch({
    args: [CLI, 'apply', url(), 'fix3/src/quote.ts', '--root', 'fix3', '--deadline', '10000'],
    cwd: project.root,
    env: { LIVEPATCH_FLEET_DECIDE_DELAY_MS: '60000' },
    name: 'livepatch apply',
  });
  await apply.waitFor('stderr', /all 4 member\(s\) staged/, { timeoutMs: 60_000 });
  const rid = /rollout (\S+): proposed/.exec(apply.stderr())![1]!;
  apply.child.kill('SIGKILL');
  await waitFor('the deadline abort', async () => (await etcd.get(`${PREFIX}decision/${rid}`).string()) === 'abort', 30_000);
  await waitFor('every member aborted its staged set', async () => {
    const acks = await etcd.getAll().prefix(`${PREFIX}acks/${rid}/`).strings();
    return Object.values(acks).length === 4 && Object.values(acks).every((v) => JSON.parse(v).state === 'aborted');
  });
  assert.equal(await etcd.get(`${PREFIX}head`).string(), '1', 'the fleet generation did not move');
  assert.deepEqual(await Promise.all(apps.map(generationOf)), gens, 'no member committed');
  // Each agent's audit log (one file here: the apps share a project root) records the stage and the abort.
  const audit = readFileSync(join(project.root, '.livepatch', 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const ops = (op: string) => audit.filter((r) => r.op === op && r.detail === `rollout ${rid}` && r.outcome === 'ok').length;
  assert.equal(ops('fleet-stage'), 4);
  assert.equal(ops('fleet-abort'), 4);
  for (const a of apps) assert.equal(await tagOf(a), 'B2');
});

test('an agent whose stage fails (another build) fails the whole apply with nothing committed; status flags it', { skip }, async () => {
  const other = createProject();
  try {
    other.write('src/rates.ts', RATES_B);
    other.write('src/quote.ts', QUOTE_B);
    other.build();
    const e = await startApp(other.root, { env: fleetEnv({ LIVEPATCH_TOKENS: tokens.file }) });
    try {
      // The fleet's patch is written against rate(currency): it cannot apply here, so the agent serves its own code and says so.
      assert.equal(await tagOf(e), 'B1');
      assert.match(e.stderr(), /LP_ERR_FLEET_JOIN/);
      await waitFor('five members', async () => (await members()) === 5);
      const s = await status();
      assert.equal(s.ok, false);
      const flagged = s.members.filter((m: { flags: string[] }) => m.flags.length > 0);
      assert.equal(flagged.length, 1);
      assert.equal(flagged[0].state, 'diverged');
      assert.equal(flagged[0].error.code, 'LP_ERR_FLEET_JOIN');
      assert.ok(flagged[0].flags.some((f: string) => f.startsWith('hashes: src/quote.ts')));
      const gens = await Promise.all(apps.map(generationOf));

      const r = await runCli(['apply', url(), 'fix3/src/quote.ts', '--root', 'fix3', '--deadline', '180000', '--json'], {
        ...SLOW,
        cwd: project.root,
      });
      assert.equal(r.code, 1, r.stderr + r.stdout);
      const j = JSON.parse(r.stdout);
      assert.equal(j.committed, false);
      assert.equal(j.decision, 'abort');
      assert.equal(j.error.code, 'LP_ERR_FLEET_STAGE_FAILED');
      const failed = j.members.filter((m: { state: string }) => m.state === 'failed');
      assert.equal(failed.length, 1);
      assert.equal(failed[0].address, e.agent);
      await waitFor('the others aborted', async () => {
        const acks = Object.values(await etcd.getAll().prefix(`${PREFIX}acks/${j.rollout}/`).strings()).map((v) => JSON.parse(v).state);
        return acks.filter((a) => a === 'aborted').length === 4;
      });
      assert.deepEqual(await Promise.all(apps.map(generationOf)), gens);
      for (const a of apps) assert.equal(await tagOf(a), 'B2');
      assert.equal(await etcd.get(`${PREFIX}head`).string(), '1');
    } finally {
      await e.stop();
    }
  } finally {
    other.cleanup();
  }
  await waitFor('the stopped member to drop out', async () => (await members()) === 4);
});

test('a canary of 1 whose check fails is rolled back; the others never commit', { skip }, async () => {
  const gens = await Promise.all(apps.map(generationOf));
  // The check records what the canary serves (it committed), then fails.
  const seen = join(project.root, 'canary-seen.json');
  const byAgent = Object.fromEntries(apps.map((a) => [a.agent!, a.httpPort]));
  const check = join(project.root, 'check.js');
  writeFileSync(
    check,
    `const ports = ${JSON.stringify(byAgent)};
const agent = process.env.LIVEPATCH_FLEET_CANARIES;
fetch('http://127.0.0.1:' + ports[agent] + '/mix').then((r) => r.json()).then((j) => {
  require('fs').writeFileSync(${JSON.stringify(seen)}, JSON.stringify({ agent, b: j.b }));
  process.exit(1);
}, () => process.exit(2));
`,
  );
  const r = await runCli(
    [
      'apply',
      url(),
      'fix3/src/quote.ts',
      '--root',
      'fix3',
      '--canary',
      '1',
      '--deadline',
      '180000',
      '--canary-check',
      `"${process.execPath}" "${check}"`,
      '--json',
    ],
    { ...SLOW, cwd: project.root },
  );
  assert.equal(r.code, 1, r.stderr + r.stdout);
  const j = JSON.parse(r.stdout);
  assert.equal(j.error.code, 'LP_ERR_FLEET_CANARY_FAILED');
  assert.equal(j.committed, false);
  assert.equal(j.canaries.length, 1);
  const canary = j.members.find((m: { canary?: boolean }) => m.canary);
  assert.equal(canary.state, 'rolled-back');
  const { agent, b } = JSON.parse(readFileSync(seen, 'utf8'));
  assert.equal(agent, canary.address);
  assert.equal(b, 'B3', 'the canary served the new code while the check ran');
  await waitFor('the others aborted', async () => {
    const acks = Object.values(await etcd.getAll().prefix(`${PREFIX}acks/${j.rollout}/`).strings()).map((v) => JSON.parse(v).state);
    return acks.filter((a) => a === 'aborted').length === 3;
  });
  for (const a of apps) assert.equal(await tagOf(a), 'B2');
  const after = await Promise.all(apps.map(generationOf));
  apps.forEach((a, i) => {
    if (a.agent === canary.address) assert.equal(after[i], gens[i]! + 2, 'the canary committed, then rolled back');
    else assert.equal(after[i], gens[i], 'the others never committed');
  });
  assert.equal(await etcd.get(`${PREFIX}head`).string(), '1');
});

test('a passing canary commits everywhere; fleet rollback and history work through the store', { skip }, async () => {
  const r = await runCli(
    [
      'apply',
      url(),
      'fix4/src/quote.ts',
      '--root',
      'fix4',
      '--canary',
      '50%',
      '--deadline',
      '180000',
      '--canary-check',
      `"${process.execPath}" -e "process.exit(0)"`,
      '--json',
    ],
    { ...SLOW, cwd: project.root },
  );
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const j = JSON.parse(r.stdout);
  assert.equal(j.canaries.length, 2);
  assert.equal(j.generation, 2);
  for (const a of apps) assert.equal(await tagOf(a), 'B4');
  const rb = await runCli(['rollback', url(), '--json']);
  assert.equal(rb.code, 0, rb.stderr);
  assert.deepEqual(JSON.parse(rb.stdout), { fleet: NAME, generation: 3, to: 1 });
  await waitFor('every member back on B2', async () => (await Promise.all(apps.map(tagOf))).every((t) => t === 'B2'));
  await waitFor('status clean', async () => (await status()).ok === true);
  const h = await runCli(['history', url(), '--json']);
  assert.equal(h.code, 0, h.stderr);
  assert.deepEqual(
    JSON.parse(h.stdout).entries.map((e: { seq: number; kind: string }) => [e.seq, e.kind]),
    [
      [3, 'rollback'],
      [2, 'patch'],
      [1, 'patch'],
    ],
  );
});
