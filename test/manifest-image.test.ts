/**
 * Checks off the host: a "production image" folder holding only `dist/`, the production
 * `node_modules` (livepatch's runtime files and dependencies, no `typescript`) and the build manifest
 * written by `livepatch manifest`, started with the agent. Patches type-checked on the client
 * (`--check-here`, the checkout overlaid with the live patched sources) apply; a set whose overlay
 * hashes do not match what the host runs is refused with LP_ERR_PATCH_CONFLICT; a type error found
 * on the client is exit 1 in tsc's form; which side checked is in history and the audit log.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { buildImage } from './helpers/image';
import { openAuthed, rawRequest, readAudit } from './helpers/raw-client';

let project: Project;
let image: string;
let tokens: Tokens;
let app: AppProcess;
let agent: string;
let auditFile: string;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

// rates v2 adds fee(): the quote patch below type-checks only against the live (patched) rates.
const RATES_V2 = `export const RATES_LABEL = 'rates-v2';

export function rate(currency: string): number {
  return currency === 'EUR' ? 1.2 : 1;
}

export function fee(): number {
  return 5;
}

export function tag(): string {
  return 'A2';
}
`;
const QUOTE_V2 = `import { rate, fee } from './rates';

export function quote(currency: string, amount: number): number {
  return Math.round(amount * rate(currency) * 100) / 100 + fee();
}

export function tag(): string {
  return 'B2';
}

export class Counter {
  count = 0;
  hit(): number {
    this.count += 1;
    return this.count;
  }
  label(): string {
    return \`v2:\${this.count}\`;
  }
}
`;
const QUOTE_BROKEN = QUOTE_V2.replace('rate(currency) * 100', 'rate(currency, amount) * 100');

/** The image app's settings: tokens, audit log, and a journal so patches survive a restart. */
const appEnv = () => ({ LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_AUDIT: auditFile, LIVEPATCH_JOURNAL: join(image, 'journal') });

/** The CLI run from the checkout (the project tree at the deployed commit) with a patch token. */
const cli = (args: string[]) => runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.patch } });

before(async () => {
  project = createProject();
  project.write('patch/src/rates.ts', RATES_V2);
  project.write('patch2/src/quote.ts', QUOTE_V2);
  project.write('broken/src/quote.ts', QUOTE_BROKEN);
  const m = await runCli(['manifest', '--root', project.root]);
  assert.equal(m.code, 0, m.stderr);
  assert.match(m.stdout, /wrote .*livepatch\.manifest\.json: 4 module\(s\)/);

  image = buildImage(project.root);
  tokens = createTokens(image);
  auditFile = join(image, 'audit.jsonl');
  app = await startApp(image, { env: appEnv() });
  agent = app.agent!;
});

after(async () => {
  await app?.stop();
  if (image) rmSync(image, { recursive: true, force: true });
  project?.cleanup();
});

test('the image holds no sources, no tsconfig and no compiler; the manifest maps its compiled files to module ids and source hashes', async () => {
  assert.equal(existsSync(join(image, 'src')), false);
  assert.equal(existsSync(join(image, 'tsconfig.json')), false);
  assert.equal(existsSync(join(image, 'node_modules', 'typescript')), false);
  const manifest = JSON.parse(readFileSync(join(image, 'livepatch.manifest.json'), 'utf8'));
  assert.equal(manifest.format, 'livepatch-manifest/1');
  assert.deepEqual(manifest.modules['src/rates.ts'], {
    hash: sha256(readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8')),
    js: 'dist/rates.js',
  });

  const s = await cli(['status', agent, '--json']);
  assert.equal(s.code, 0, s.stderr);
  const status = JSON.parse(s.stdout);
  assert.deepEqual(status.patching, { enabled: true, checks: 'client' });
  assert.match(
    (await cli(['status', agent])).stdout,
    /^patching +enabled \(no sources here: patches checked on the client, --check-here\)$/m,
  );
  // No checker on this host: status shows none, and warm has nothing to start.
  assert.equal(status.checker, undefined);
  const w = await cli(['warm', agent, '--json']);
  assert.equal(w.code, 0, w.stderr);
  assert.deepEqual(JSON.parse(w.stdout), {
    started: false,
    reason: 'this host does not type-check patches: they are checked on the client',
  });
  const v = JSON.parse((await cli(['versions', agent, '--json'])).stdout);
  const rates = v.find((r: { module: string }) => r.module === 'src/rates.ts');
  assert.equal(rates?.hash, manifest.modules['src/rates.ts'].hash, "the live hash is the manifest's source hash");
});

test('without --check-here the host says it cannot check, and nothing changes', async () => {
  const r = await cli(['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '--json']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_PATCH_NO_SOURCES');
  assert.match(r.stderr, /--check-here/);
  assert.equal((await app.get('/label')).label, 'rates-v1');
});

test('a patch checked on the client applies; history and the audit log say the client checked it', async () => {
  const r = await cli(['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '--check-here', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.hosts[0].result.checkedBy, 'client');
  assert.equal((await app.get('/label')).label, 'rates-v2');

  const h = JSON.parse((await cli(['history', agent, '--json'])).stdout);
  const last = h[h.length - 1];
  assert.equal(last.generation, 2);
  assert.equal(last.checkedBy, 'client');
  const human = await cli(['history', agent]);
  assert.match(human.stdout, /^GEN +KIND .* CHECKED +CHANGED +MESSAGE$/m);
  assert.match(human.stdout, /^2 +patch .* client +src\/rates\.ts/m);
  const rec = readAudit(auditFile).find((a) => a.op === 'apply' && a.outcome === 'ok');
  assert.equal(rec?.checkedBy, 'client');
});

test('the client overlays the live patched module: a patch using what only the live version has checks and applies', async () => {
  // The checkout still has rates v1 (no fee()); only the overlay of the live source makes this pass.
  const c = await cli(['check', agent, 'patch2/src/quote.ts', '--root', 'patch2', '--check-here']);
  assert.equal(c.code, 0, c.stdout + c.stderr);
  assert.match(c.stdout, /^ok: the patch type-checks against .* on this machine/m);
  assert.doesNotMatch(readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8'), /fee/);

  const r = await cli(['apply', agent, 'patch2/src/quote.ts', '--root', 'patch2', '--check-here']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(await app.get('/quote?c=EUR&a=10'), { total: 17 });
});

test('a type error found on the client is exit 1 in tsc form, and nothing is sent', async () => {
  for (const op of ['check', 'apply']) {
    const r = await cli([op, agent, 'broken/src/quote.ts', '--root', 'broken', '--check-here']);
    assert.equal(r.code, 1, `${op}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /^src\/quote\.ts\(4,\d+\): error TS2554: Expected 1 arguments, but got 2\.$/m, op);
  }
  const h = JSON.parse((await cli(['history', agent, '--json'])).stdout);
  assert.equal(h.length, 3);
});

test('a set whose overlay hashes do not match what the host runs is refused with LP_ERR_PATCH_CONFLICT', async () => {
  const c = await openAuthed(agent, tokens.patch);
  try {
    const live: { module: string; hash: string }[] = (await rawRequest(c, 1, 'versions', {})).result;
    const against = Object.fromEntries(live.filter((v) => v.module !== 'src/rates.ts').map((v) => [v.module, v.hash]));
    const files = { 'src/rates.ts': RATES_V2.replace('rates-v2', 'rates-v3') };
    const js = {
      'src/rates.ts': "exports.RATES_LABEL = 'rates-v3'; exports.rate = () => 1; exports.fee = () => 0; exports.tag = () => 'A3';\n",
    };
    // One module checked against a text the host does not run.
    const stale = { ...against, 'src/server.ts': sha256('something else') };
    const a = await rawRequest(c, 2, 'apply', { patch: { files, compiled: { js, against: stale } } });
    assert.equal(a.error?.code, 'LP_ERR_PATCH_CONFLICT', JSON.stringify(a));
    assert.equal(a.error.details.conflicts[0].module, 'src/server.ts');
    // A live module the client did not check against.
    const { ['src/quote.ts']: _q, ...partial } = against;
    const b = await rawRequest(c, 3, 'check', { patch: { files, compiled: { js, against: partial } } });
    assert.equal(b.error?.code, 'LP_ERR_PATCH_CONFLICT', JSON.stringify(b));
    assert.deepEqual(b.error.details.conflicts[0], {
      module: 'src/quote.ts',
      expected: null,
      actual: live.find((v) => v.module === 'src/quote.ts')!.hash,
    });
    // The same set with the right hashes passes the host's part of the check.
    const ok = await rawRequest(c, 4, 'check', { patch: { files, compiled: { js, against } } });
    assert.equal(ok.result?.ok, true, JSON.stringify(ok));
    assert.equal(ok.result.checkedBy, 'client');
  } finally {
    c.close();
  }
  assert.equal((await app.get('/label')).label, 'rates-v2');
  const refused = readAudit(auditFile).filter((a) => a.outcome === 'LP_ERR_PATCH_CONFLICT');
  assert.ok(refused.length >= 2);
  assert.equal(refused[0].checkedBy, 'client');
});

test('a checkout that is not at the deployed commit is refused on the client with LP_ERR_PATCH_CONFLICT (exit 5)', async () => {
  project.write('src/server.ts', readFileSync(join(project.root, 'src', 'server.ts'), 'utf8') + '\n// local edit\n');
  const r = await cli(['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '--check-here', '--json']);
  assert.equal(r.code, 5, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_PATCH_CONFLICT');
  assert.match(r.stderr, /src\/server\.ts differs/);
});

test('after a restart the image replays the client-checked patches from its journal, still without a compiler', async () => {
  await app.stop();
  app = await startApp(image, { env: appEnv() });
  agent = app.agent!;
  assert.equal((await app.get('/label')).label, 'rates-v2');
  assert.deepEqual(await app.get('/quote?c=EUR&a=10'), { total: 17 });
  const s = JSON.parse((await cli(['status', agent, '--json'])).stdout);
  assert.deepEqual(s.drift, []);
  assert.deepEqual(s.patchedModules, ['src/quote.ts', 'src/rates.ts']);
  const journal = readFileSync(join(image, 'journal', 'journal.jsonl'), 'utf8');
  assert.match(journal, /"checkedBy":"client"/);
});

test('an ES module app in an image: the client sends ES module syntax, and the patch applies', async () => {
  const esm = createProject('esm');
  let esmImage: string | undefined;
  let esmApp: AppProcess | undefined;
  try {
    esm.write('patch/src/greet.ts', 'export function greet(who: string): string {\n  return `hi ${who}`;\n}\n');
    assert.equal((await runCli(['manifest', '--root', esm.root])).code, 0);
    esmImage = buildImage(esm.root);
    const t = createTokens(esmImage);
    esmApp = await startApp(esmImage, { env: { LIVEPATCH_TOKENS: t.file } });
    const text = async () => (await fetch(`http://127.0.0.1:${esmApp!.httpPort}/`)).text();
    assert.equal(await text(), 'hello esm');
    const r = await runCli(['apply', esmApp.agent!, 'patch/src/greet.ts', '--root', 'patch', '--check-here', '--json'], {
      cwd: esm.root,
      env: { LIVEPATCH_TOKEN: t.patch },
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(await text(), 'hi esm');
    const src = await runCli(['show', esmApp.agent!, 'src/greet.ts'], { cwd: esm.root, env: { LIVEPATCH_TOKEN: t.read } });
    assert.match(src.stdout, /hi \$\{who\}/);
  } finally {
    await esmApp?.stop();
    if (esmImage) rmSync(esmImage, { recursive: true, force: true });
    esm.cleanup();
  }
});

/** Direct children of `pid` (the type checker is the host's only child process). */
function children(pid: number): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // The thread ended.
    }
  }
  return out;
}

test('LIVEPATCH_CHECKS=client: a host with sources takes only client-checked patches and never starts a checker', async () => {
  const p = createProject();
  let a: AppProcess | undefined;
  try {
    p.write('patch/src/rates.ts', RATES_V2);
    const t = createTokens(p.root);
    a = await startApp(p.root, { env: { LIVEPATCH_TOKENS: t.file, LIVEPATCH_CHECKS: 'client' } });
    const run = (args: string[]) => runCli(args, { cwd: p.root, env: { LIVEPATCH_TOKEN: t.patch } });
    assert.deepEqual(JSON.parse((await run(['status', a.agent!, '--json'])).stdout).patching, { enabled: true, checks: 'client' });
    const refused = await run(['apply', a.agent!, 'patch/src/rates.ts', '--root', 'patch']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /LIVEPATCH_CHECKS=client/);
    const r = await run(['apply', a.agent!, 'patch/src/rates.ts', '--root', 'patch', '--check-here', '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout).hosts[0].result.checkedBy, 'client');
    assert.equal((await a.get('/label')).label, 'rates-v2');
    assert.deepEqual(children(a.child.pid!), [], 'no type checker process was started on the host');
  } finally {
    await a?.stop();
    p.cleanup();
  }
});
