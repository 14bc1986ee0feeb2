/**
 * Signed patch sets through the built binary against a real agent started with
 * LIVEPATCH_TRUSTED_KEYS: keygen and sign offline; apply of a set signed by the trusted key commits;
 * an unsigned set, a set changed by one byte after signing and a set signed by an unknown key are
 * refused with their documented codes (exit 1), audited with the key id, and nothing is committed;
 * rollback still works, to the deploy and to the signed generation; the signer is in history and the
 * audit log, and survives a restart (journal replay). The stage op (fleet applies) is held to the same
 * rule over a raw socket.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { openAuthed, rawRequest, readAudit } from './helpers/raw-client';

const RATES_V2 = `export const RATES_LABEL = 'rates-v2';

export function rate(currency: string): number {
  return currency === 'EUR' ? 1.2 : 1;
}

export function tag(): string {
  return 'A2';
}
`;

let project: Project;
let tokens: Tokens;
let app: AppProcess;
let agent: string;
let ciKeyId: string;
let rogueKeyId: string;
const auditFile = () => join(project.root, 'audit.jsonl');

const cli = (args: string[], token: string | undefined = tokens.patch) =>
  runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: token } });
const label = async () => ((await app.get('/label')) as { label: string }).label;
const generation = async () => JSON.parse((await cli(['status', agent, '--json'], tokens.read)).stdout).currentGeneration as number;
const boot = async () => {
  app = await startApp(project.root, {
    env: {
      LIVEPATCH_TOKENS: tokens.file,
      LIVEPATCH_AUDIT: auditFile(),
      LIVEPATCH_JOURNAL: join(project.root, 'journal'),
      LIVEPATCH_TRUSTED_KEYS: join(project.root, 'trusted-keys'),
    },
  });
  agent = app.agent!;
};

before(async () => {
  project = createProject();
  tokens = createTokens(project.root);
  project.write('patch/src/rates.ts', RATES_V2);
  for (const [dir, name] of [
    ['keys-ci', 'ci-release'],
    ['keys-rogue', 'rogue'],
  ] as const) {
    const r = await runCli(['keygen', '--out', dir, '--name', name, '--json'], { cwd: project.root });
    assert.equal(r.code, 0, r.stderr);
    const k = JSON.parse(r.stdout);
    if (name === 'ci-release') ciKeyId = k.keyId;
    else rogueKeyId = k.keyId;
  }
  // Only the CI key is trusted; a comment and a blank line are allowed.
  writeFileSync(
    join(project.root, 'trusted-keys'),
    `# keys that may sign patch sets\n\n${readFileSync(join(project.root, 'keys-ci', 'livepatch-signing.pub'), 'utf8')}`,
  );
  await boot();
});

after(async () => {
  await app?.stop();
  project?.cleanup();
});

test('keygen writes a 0600 private key and a trusted-keys line, prints the line, and never overwrites', async () => {
  const pub = readFileSync(join(project.root, 'keys-ci', 'livepatch-signing.pub'), 'utf8');
  assert.match(pub, /^ci-release ed25519:[A-Za-z0-9+/]{43}=\n$/);
  assert.equal(statSync(join(project.root, 'keys-ci', 'livepatch-signing.key')).mode & 0o777, 0o600);
  assert.match(readFileSync(join(project.root, 'keys-ci', 'livepatch-signing.key'), 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  const again = await runCli(['keygen', '--out', 'keys-ci'], { cwd: project.root });
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already exists/);
  assert.equal(readFileSync(join(project.root, 'keys-ci', 'livepatch-signing.pub'), 'utf8'), pub, 'the existing key is kept');
  const plain = await runCli(['keygen', '--out', 'keys-plain'], { cwd: project.root });
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, readFileSync(join(project.root, 'keys-plain', 'livepatch-signing.pub'), 'utf8'));
});

test('status tells that the agent takes signed patch sets only', async () => {
  const s = JSON.parse((await cli(['status', agent, '--json'], tokens.read)).stdout);
  assert.equal(s.patching.signaturesRequired, true);
  assert.match((await cli(['status', agent], tokens.read)).stdout, /^patching +enabled \(signed patch sets only\)$/m);
});

test('unsigned, tampered and unknown-key sets are refused with their codes and nothing is committed', async () => {
  // Unsigned: plain .ts arguments, and a .json set without a signature.
  const unsigned = await cli(['apply', agent, 'patch/src/rates.ts', '-m', 'unsigned', '--json']);
  assert.equal(unsigned.code, 1, unsigned.stderr);
  assert.equal(JSON.parse(unsigned.stdout).error.code, 'LP_ERR_PATCH_UNSIGNED');
  assert.match(unsigned.stderr, /accepts only signed patch sets/);

  const signed = await cli(
    [
      'sign',
      'patch/src/rates.ts',
      '--root',
      'patch',
      '--key',
      'keys-ci/livepatch-signing.key',
      '--id',
      'rates-v2',
      '-m',
      'EUR 1.2',
      '--base-dir',
      '.',
      '--out',
      'set.json',
    ],
    undefined,
  );
  assert.equal(signed.code, 0, signed.stderr);
  assert.match(signed.stdout, new RegExp(`set\\.json: 1 module\\(s\\) signed with key ${ciKeyId}`));
  const set = JSON.parse(readFileSync(join(project.root, 'set.json'), 'utf8'));
  assert.deepEqual(Object.keys(set.files), ['src/rates.ts']);
  assert.equal(set.id, 'rates-v2');
  assert.equal(set.message, 'EUR 1.2');
  assert.match(set.base['src/rates.ts'], /^[0-9a-f]{64}$/);
  assert.equal(set.signature.keyId, ciKeyId);

  // One byte of one source changed after signing.
  const tampered = structuredClone(set);
  tampered.files['src/rates.ts'] = set.files['src/rates.ts'].replace('1.2', '1.3');
  assert.equal(tampered.files['src/rates.ts'].length, set.files['src/rates.ts'].length);
  writeFileSync(join(project.root, 'tampered.json'), JSON.stringify(tampered));
  const bad = await cli(['apply', agent, 'tampered.json', '--json']);
  assert.equal(bad.code, 1, bad.stderr);
  assert.equal(JSON.parse(bad.stdout).error.code, 'LP_ERR_PATCH_BAD_SIGNATURE');
  assert.match(bad.stderr, /does not match the patch set/);

  // Signed by a key the agent does not trust.
  const rogue = await cli(
    ['sign', 'patch/src/rates.ts', '--root', 'patch', '--key', 'keys-rogue/livepatch-signing.key', '-m', 'rogue', '--out', 'rogue.json'],
    undefined,
  );
  assert.equal(rogue.code, 0, rogue.stderr);
  const unknown = await cli(['apply', agent, 'rogue.json', '--json']);
  assert.equal(unknown.code, 1, unknown.stderr);
  assert.equal(JSON.parse(unknown.stdout).error.code, 'LP_ERR_PATCH_BAD_SIGNATURE');
  assert.equal(JSON.parse(unknown.stdout).error.details?.keyId, rogueKeyId, 'the --json error carries the details the agent sent');
  assert.match(unknown.stderr, new RegExp(`key ${rogueKeyId}, which this agent does not trust`));

  // The stage op (used by fleet applies) follows the same rule.
  const c = await openAuthed(agent, tokens.patch);
  try {
    const { signature: _s, ...bare } = set;
    const st = await rawRequest(c, 1, 'stage', { patch: bare });
    assert.equal(st.ok, false);
    assert.equal(st.error.code, 'LP_ERR_PATCH_UNSIGNED');
    const st2 = await rawRequest(c, 2, 'stage', { patch: tampered });
    assert.equal(st2.error.code, 'LP_ERR_PATCH_BAD_SIGNATURE');
    assert.equal(st2.error.details.keyId, ciKeyId);
  } finally {
    c.close();
  }

  assert.equal(await label(), 'rates-v1');
  assert.equal(await generation(), 1);
  const refused = readAudit(auditFile()).filter((r) => r.op === 'apply' || r.op === 'stage');
  assert.deepEqual(
    refused.map((r) => [r.op, r.outcome, r.signer?.keyId]),
    [
      ['apply', 'LP_ERR_PATCH_UNSIGNED', undefined],
      ['apply', 'LP_ERR_PATCH_BAD_SIGNATURE', ciKeyId],
      ['apply', 'LP_ERR_PATCH_BAD_SIGNATURE', rogueKeyId],
      ['stage', 'LP_ERR_PATCH_UNSIGNED', undefined],
      ['stage', 'LP_ERR_PATCH_BAD_SIGNATURE', ciKeyId],
    ],
  );
  assert.equal(refused.find((r) => r.signer?.keyId === rogueKeyId).signer.name, undefined, 'an unknown key has no name');
});

test('a signed set cannot be changed on the way: --id, -m and extra PATCH arguments are usage errors', async () => {
  for (const extra of [['--id', 'other'], ['-m', 'other'], ['patch/src/rates.ts']]) {
    const r = await cli(['apply', agent, 'set.json', ...extra]);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
  }
  assert.equal(await generation(), 1);
});

test('a set signed by the trusted key is applied; history and audit name the signer; rollback still works', async () => {
  const r = await cli(['apply', agent, 'set.json', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).ok, true);
  assert.equal(await label(), 'rates-v2');

  const h = JSON.parse((await cli(['history', agent, '--json'], tokens.read)).stdout);
  const g2 = h.find((g: any) => g.generation === 2);
  assert.deepEqual(g2.signer, { keyId: ciKeyId, name: 'ci-release' });
  assert.equal(g2.message, 'EUR 1.2');
  assert.match(
    (await cli(['history', agent], tokens.read)).stdout,
    new RegExp(`^2 +patch .* patcher +ci-release \\(${ciKeyId}\\) +current`, 'm'),
  );
  const rec = readAudit(auditFile()).filter((a) => a.op === 'apply' && a.outcome === 'ok');
  assert.equal(rec.length, 1);
  assert.deepEqual(rec[0].signer, { keyId: ciKeyId, name: 'ci-release' });
  assert.equal(rec[0].patchId, 'rates-v2');

  // Rollback needs no signature: to the deploy, then to the generation the signed set made.
  const back = await cli(['rollback', agent]);
  assert.equal(back.code, 0, back.stderr);
  assert.equal(await label(), 'rates-v1');
  const fwd = await cli(['rollback', agent, '--to', '2']);
  assert.equal(fwd.code, 0, fwd.stderr);
  assert.equal(await label(), 'rates-v2');
  assert.equal(await generation(), 4);
});

test('after a restart the journal replays the signed set and history still names its signer', async () => {
  await app.stop();
  await boot();
  assert.equal(await label(), 'rates-v2');
  const h = JSON.parse((await cli(['history', agent, '--json'], tokens.read)).stdout);
  const signed = h.filter((g: any) => g.signer);
  assert.ok(signed.length >= 1, JSON.stringify(h));
  assert.deepEqual(signed[0].signer, { keyId: ciKeyId, name: 'ci-release' });
  // Re-sending the same id is a duplicate (exit 5), checked after the signature.
  const dup = await cli(['apply', agent, 'set.json', '--json']);
  assert.equal(dup.code, 5, dup.stderr);
  assert.equal(JSON.parse(dup.stdout).error.code, 'LP_ERR_PATCH_DUPLICATE');
});

test('an agent whose trusted-keys file is malformed does not start: it never falls back to unsigned patches', async () => {
  writeFileSync(join(project.root, 'bad-keys'), 'ci ed25519:not-a-key\n');
  await assert.rejects(
    startApp(project.root, {
      env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_TRUSTED_KEYS: join(project.root, 'bad-keys') },
      timeoutMs: 8000,
    }),
    /agent not started: trusted keys .*line 1/,
  );
});
