/**
 * Signed patch sets on a host without TypeScript sources (a production image: dist/, the build
 * manifest, no tsconfig, no compiler) whose agent has LIVEPATCH_TRUSTED_KEYS. Such a host runs the
 * compiled JavaScript sent with the set, so the signature must cover it: a set signed with
 * `livepatch sign --compile` and applied with `--check-here` commits; a set signed over its sources
 * only is refused with LP_ERR_PATCH_UNSIGNED; one byte of the signed JavaScript changed is refused by
 * the CLI (LP_ERR_PATCH_JS_MISMATCH, nothing sent) and, sent over a raw socket, by the agent
 * (LP_ERR_PATCH_BAD_SIGNATURE); refusals are audited with the key id and commit nothing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { buildImage } from './helpers/image';
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
let image: string;
let tokens: Tokens;
let app: AppProcess;
let agent: string;
let keyId: string;
let auditFile: string;

/** The CLI run from the checkout (the project tree at the deployed commit) with a patch token. */
const cli = (args: string[]) => runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.patch } });
const label = async () => ((await app.get('/label')) as { label: string }).label;
const generation = async () => JSON.parse((await cli(['status', agent, '--json'])).stdout).currentGeneration as number;
const sign = (out: string, ...extra: string[]) =>
  runCli(
    ['sign', 'patch/src/rates.ts', '--root', 'patch', '--key', 'keys/livepatch-signing.key', '-m', 'EUR 1.2', '--out', out, ...extra],
    { cwd: project.root },
  );
const readSet = (file: string) => JSON.parse(readFileSync(join(project.root, file), 'utf8'));
const patchRecords = () => readAudit(auditFile).filter((r) => r.op === 'apply' || r.op === 'stage');

before(async () => {
  project = createProject();
  project.write('patch/src/rates.ts', RATES_V2);
  const k = await runCli(['keygen', '--out', 'keys', '--name', 'ci-release', '--json'], { cwd: project.root });
  assert.equal(k.code, 0, k.stderr);
  keyId = JSON.parse(k.stdout).keyId;
  const m = await runCli(['manifest', '--root', project.root]);
  assert.equal(m.code, 0, m.stderr);

  image = buildImage(project.root);
  tokens = createTokens(image);
  auditFile = join(image, 'audit.jsonl');
  writeFileSync(join(image, 'trusted-keys'), readFileSync(join(project.root, 'keys', 'livepatch-signing.pub'), 'utf8'));
  app = await startApp(image, {
    env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_AUDIT: auditFile, LIVEPATCH_TRUSTED_KEYS: join(image, 'trusted-keys') },
  });
  agent = app.agent!;
});

after(async () => {
  await app?.stop();
  if (image) rmSync(image, { recursive: true, force: true });
  project?.cleanup();
});

test('sign --compile writes the JavaScript each module runs as and signs it over the /2 encoding', async () => {
  const s = await sign('signed-js.json', '--compile', '--json');
  assert.equal(s.code, 0, s.stderr);
  assert.equal(JSON.parse(s.stdout).compiled, true);
  const set = readSet('signed-js.json');
  assert.equal(set.signature.format, 'livepatch-patch-set/2');
  assert.equal(set.signature.keyId, keyId);
  assert.deepEqual(Object.keys(set.compiled.js), ['src/rates.ts']);
  assert.match(set.compiled.js['src/rates.ts'], /exports\.RATES_LABEL = 'rates-v2'/, 'CommonJS, as the image loads it');
  assert.equal(set.compiled.against, undefined, 'what a client checks against at apply time is not signed');

  const plain = await sign('signed-src.json');
  assert.equal(plain.code, 0, plain.stderr);
  const src = readSet('signed-src.json');
  assert.equal(src.signature.format, undefined);
  assert.equal(src.compiled, undefined);

  const usage = await sign('x.json', '--checkout', '.');
  assert.equal(usage.code, 2, '--checkout without --compile is a usage error');
  const noConfig = await sign('x.json', '--compile', '--checkout', 'patch');
  assert.equal(noConfig.code, 2);
  assert.match(noConfig.stderr, /no tsconfig\.json in .*patch/);
});

test('a set signed over its sources only is refused with LP_ERR_PATCH_UNSIGNED: its JavaScript is not covered', async () => {
  const r = await cli(['apply', agent, 'signed-src.json', '--check-here', '--json']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_PATCH_UNSIGNED');
  assert.match(r.stderr, new RegExp(`signature \\(key ${keyId}\\)`));
  assert.match(r.stderr, /covers the sources only, not the compiled JavaScript: .*livepatch sign --compile/);
  assert.equal(await label(), 'rates-v1');
  assert.equal(await generation(), 1);
  const rec = patchRecords().at(-1);
  assert.equal(rec.outcome, 'LP_ERR_PATCH_UNSIGNED');
  assert.deepEqual(rec.signer, { keyId, name: 'ci-release' });
  assert.equal(rec.detail, 'the signature does not cover the compiled JavaScript');
});

test('a set signed with its JavaScript needs a client check here: without --check-here it is LP_ERR_PATCH_NO_SOURCES', async () => {
  const r = await cli(['apply', agent, 'signed-js.json', '--json']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_PATCH_NO_SOURCES');
  assert.match(r.stderr, /--check-here/);
  assert.equal(await generation(), 1);
});

test('one byte of the signed JavaScript changed: the CLI refuses to send it, the agent refuses it with LP_ERR_PATCH_BAD_SIGNATURE', async () => {
  const set = readSet('signed-js.json');
  const tampered = structuredClone(set);
  tampered.compiled.js['src/rates.ts'] = set.compiled.js['src/rates.ts'].replace('1.2', '1.9');
  assert.equal(tampered.compiled.js['src/rates.ts'].length, set.compiled.js['src/rates.ts'].length);
  assert.notEqual(tampered.compiled.js['src/rates.ts'], set.compiled.js['src/rates.ts']);
  writeFileSync(join(project.root, 'tampered-js.json'), JSON.stringify(tampered));
  const before = patchRecords().length;

  const r = await cli(['apply', agent, 'tampered-js.json', '--check-here', '--json']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_PATCH_JS_MISMATCH');
  assert.match(r.stderr, /compiled JavaScript for src\/rates\.ts is not what its source compiles to here/);
  assert.equal(patchRecords().length, before, 'nothing was sent to the agent');

  // The same set sent by a client that does not compare, with a correct client check of the live program.
  const c = await openAuthed(agent, tokens.patch);
  try {
    const live: { module: string; hash: string }[] = (await rawRequest(c, 1, 'versions', {})).result;
    const against = Object.fromEntries(live.filter((v) => v.module !== 'src/rates.ts').map((v) => [v.module, v.hash]));
    const withCheck = { ...tampered, compiled: { ...tampered.compiled, against } };
    for (const [id, op] of [
      [2, 'apply'],
      [3, 'stage'],
    ] as const) {
      const a = await rawRequest(c, id, op, { patch: withCheck });
      assert.equal(a.error?.code, 'LP_ERR_PATCH_BAD_SIGNATURE', `${op}: ${JSON.stringify(a)}`);
      assert.equal(a.error.details.keyId, keyId);
      assert.match(a.error.message, /does not match the patch set and its compiled JavaScript/);
    }
    // The untampered JavaScript with the same check passes the host's part of the check (nothing staged).
    const ok = await rawRequest(c, 4, 'check', { patch: { ...set, compiled: { ...set.compiled, against } } });
    assert.equal(ok.result?.ok, true, JSON.stringify(ok));
  } finally {
    c.close();
  }
  assert.equal(await label(), 'rates-v1');
  assert.equal(await generation(), 1);
  const refused = patchRecords().slice(before);
  assert.deepEqual(
    refused.map((x) => [x.op, x.outcome, x.signer?.keyId, x.detail]),
    [
      ['apply', 'LP_ERR_PATCH_BAD_SIGNATURE', keyId, 'the signature does not match the patch set or its compiled JavaScript'],
      ['stage', 'LP_ERR_PATCH_BAD_SIGNATURE', keyId, 'the signature does not match the patch set or its compiled JavaScript'],
    ],
  );
});

test('a set signed with --compile and applied with --check-here commits the signed JavaScript; history names the signer', async () => {
  const r = await cli(['apply', agent, 'signed-js.json', '--check-here', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).hosts[0].result.checkedBy, 'client');
  assert.equal(await label(), 'rates-v2');
  assert.equal(await generation(), 2);
  const h = JSON.parse((await cli(['history', agent, '--json'])).stdout);
  const g2 = h.find((g: { generation: number }) => g.generation === 2);
  assert.deepEqual(g2.signer, { keyId, name: 'ci-release' });
  assert.equal(g2.checkedBy, 'client');
  const rec = patchRecords().at(-1);
  assert.equal(rec.outcome, 'ok');
  assert.deepEqual(rec.signer, { keyId, name: 'ci-release' });

  // Rollback needs no signature.
  const back = await cli(['rollback', agent, '--json']);
  assert.equal(back.code, 0, back.stderr);
  assert.equal(await label(), 'rates-v1');
});
