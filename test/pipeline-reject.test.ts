/**
 * Patch sets the pipeline must refuse, each run against a real app process (pipeline driven over
 * IPC, no agent): a type error in an untouched dependent, a syntax error, a throw at load, an
 * infinite loop at load (timeout; the app keeps serving), a verify veto and a stale base. Every
 * refusal leaves the generation and the app's answers unchanged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { formatDiagnostic, type Diagnostic } from '../shared/patch';
import { createProject } from './helpers/project';
import { startPipelineApp, type PipelineApp } from './helpers/pipeline-app';

const project = createProject('pipeline');
const ratesTs = readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8');
let app: PipelineApp;

test.before(async () => {
  app = await startPipelineApp(project.root, { loadTimeoutMs: 500 });
});
test.after(async () => {
  await app?.stop();
  project.cleanup();
});

/** Apply `files`, expect refusal with `code`, and check nothing changed. */
async function refused(code: string, files: Record<string, string>, extra: Record<string, unknown> = {}) {
  const before = (await app.op('generation')).result;
  const r = await app.op('apply', { patch: { files, ...extra } });
  assert.equal(r.ok, false, `expected ${code}, got ${JSON.stringify(r.result)}`);
  assert.equal(r.error!.code, code, r.error!.message);
  assert.equal((await app.op('generation')).result, before, 'generation unchanged');
  assert.deepEqual(await app.get('/quote?c=EUR&a=10'), { total: 11 }, 'app still serves the old code');
  return r.error!;
}

test('a type error in an untouched dependent is caught and names the caller', async () => {
  const changed = ratesTs.replace('rate(currency: string)', 'rate(currency: string, at: Date)');
  const err = await refused('LP_ERR_PATCH_TYPE', { 'src/rates.ts': changed });
  const diags = (err.details as { diagnostics: Diagnostic[] }).diagnostics;
  const lines = diags.map(formatDiagnostic);
  assert.ok(
    lines.some((l) => /^src\/quote\.ts\(\d+,\d+\): error TS2554: /.test(l)),
    lines.join('\n'),
  );
  assert.match(err.message, /src\/quote\.ts/);
  const check = await app.op('check', { patch: { files: { 'src/rates.ts': changed } } });
  assert.equal(check.ok, true);
  assert.equal(check.result.ok, false);
  assert.ok(check.result.diagnostics.some((d: Diagnostic) => d.file === 'src/quote.ts' && d.code === 2554));
});

test('a syntax error is refused as LP_ERR_PATCH_SYNTAX with its position', async () => {
  const err = await refused('LP_ERR_PATCH_SYNTAX', { 'src/rates.ts': 'export function rate(currency: string {\n  return 1;\n}\n' });
  const d = (err.details as { diagnostics: Diagnostic[] }).diagnostics[0]!;
  assert.equal(d.file, 'src/rates.ts');
  assert.equal(d.line, 1);
});

test('a module that throws while loading aborts the whole set', async () => {
  const tag = readFileSync(join(project.root, 'src', 'quote.ts'), 'utf8').replace("return 'B1'", "return 'B2'");
  const err = await refused('LP_ERR_PATCH_LOAD', {
    'src/quote.ts': tag,
    'src/rates.ts': ratesTs.replace('1.1', '1.3') + "\nthrow new Error('boom at load');\n",
  });
  assert.match(err.message, /boom at load/);
  assert.deepEqual(await app.get('/tag'), { tag: 'B1' }, 'the other module of the set was not applied');
});

test('a module whose exported init promise rejects aborts the set and the host survives', async () => {
  const failing =
    ratesTs.replace('1.1', '1.6') +
    "\nexport const ready: Promise<void> = new Promise((_, reject) => setTimeout(() => reject(new Error('init failed')), 10));\n";
  const err = await refused('LP_ERR_PATCH_LOAD', { 'src/rates.ts': failing });
  assert.match(err.message, /init failed/);
  assert.equal(app.child.exitCode, null, 'the host is still running');
});

test('an infinite loop at load is stopped by the timeout and the app keeps answering', async () => {
  const looping = ratesTs + '\nconst spin = (() => { while (true) {} })();\n';
  const pending = app.op('apply', { patch: { files: { 'src/rates.ts': looping } } });
  // Requests sent during the stage wait at most the load timeout, then the old code answers them.
  const during = app.get('/quote?c=EUR&a=10');
  const r = await pending;
  assert.equal(r.ok, false);
  assert.equal(r.error!.code, 'LP_ERR_PATCH_TIMEOUT', r.error!.message);
  assert.deepEqual(await during, { total: 11 });
  assert.deepEqual(await app.get('/health'), { ok: true });
  assert.equal((await app.op('generation')).result, 1);
});

test('a verify hook that throws vetoes the commit', async () => {
  const err = await refused(
    'LP_ERR_PATCH_VERIFY',
    { 'src/rates.ts': ratesTs.replace('1.1', '1.5') },
    {
      verify:
        "import { quote } from './src/quote';\nexport function euroQuote(): void {\n  if (quote('EUR', 10) !== 11) throw new Error('EUR quote changed: ' + quote('EUR', 10));\n}\n",
    },
  );
  assert.match(err.message, /EUR quote changed: 15/);
});

test('a base that no longer matches the live source is a conflict and nothing is staged', async () => {
  const err = await refused(
    'LP_ERR_PATCH_CONFLICT',
    { 'src/rates.ts': ratesTs.replace('1.1', '1.2') },
    { base: { 'src/rates.ts': '0'.repeat(64) } },
  );
  assert.equal((err.details as { conflicts: { module: string }[] }).conflicts[0]!.module, 'src/rates.ts');
});

test('module ids outside the project are refused before any work', async () => {
  const err = await refused('LP_ERR_PATCH_UNKNOWN_MODULE', { '../evil.ts': 'export {};' });
  assert.doesNotMatch(err.message, /\n\s+at /, 'no stack on the wire');
});

test('without the project sources, patching is refused but the app runs', async () => {
  const bare = createProject('pipeline');
  rmSync(join(bare.root, 'tsconfig.json'));
  const other = await startPipelineApp(bare.root);
  try {
    const p = (await other.op('patching')).result;
    assert.equal(p.enabled, false);
    assert.match(p.reason, /tsconfig/);
    const r = await other.op('apply', { patch: { files: { 'src/rates.ts': ratesTs } } });
    assert.equal(r.error?.code, 'LP_ERR_PATCH_NO_SOURCES');
    assert.deepEqual(await other.get('/quote?c=EUR&a=10'), { total: 11 });
  } finally {
    await other.stop();
    bare.cleanup();
  }
});
