/**
 * Staging in a real child app: every way a new version can fail (syntax, throw, endless top-level
 * code, rejected or stuck exported promise, export kind change, verify veto, failed migration, stale
 * base) is refused with its registry code and leaves the live program exactly as it was; kept state,
 * new modules, verify hooks and request holding work.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, type Project } from './helpers/project';
import { changes, transpile, startEngineApp, type EngineApp } from './helpers/engine-app';

let project: Project;
let app: EngineApp;
const src = (rel: string): string => readFileSync(join(project.root, rel), 'utf8');
const ratesWith = (extra: string, tag = 'A1'): string => src('src/rates.ts').replace("'A1'", `'${tag}'`) + `\n${extra}\n`;

before(async () => {
  project = createProject('engine');
  app = await startEngineApp(project.root);
});
after(async () => {
  await app?.stop();
  project?.cleanup();
});

async function rejected(files: Record<string, string>, code: string, opts: Record<string, unknown> = {}): Promise<string> {
  const before = await app.ok('state');
  const r = await app.call('apply', { changes: changes(files), opts });
  assert.equal(r.ok, false, `expected ${code}`);
  assert.equal(r.error?.code, code, r.error?.message);
  assert.ok(!r.error!.message.includes('\n    at '), 'no stack in the message');
  const afterState = await app.ok('state');
  assert.equal(afterState.current, before.current, 'no new generation');
  assert.deepEqual(afterState.versions, before.versions);
  assert.equal(afterState.multi, false, 'nothing left staged');
  assert.deepEqual(await app.get('/mix'), { a: 'A1', b: 'B1' });
  return r.error!.message;
}

test('ids outside the project are refused before anything is evaluated', async () => {
  for (const id of ['../evil.ts', '/etc/evil.ts', 'src/../../evil.ts', '']) {
    const r = await app.call('apply', { changes: [{ id, source: 'x', js: 'process.exit(3)' }] });
    assert.equal(r.error?.code, 'LP_ERR_PATCH_UNKNOWN_MODULE', id);
  }
  assert.deepEqual(await app.get('/health'), { ok: true });
});

test('a syntax error is LP_ERR_PATCH_SYNTAX naming the module', async () => {
  const changesBad = [{ id: 'src/rates.ts', source: 'x', js: 'exports.tag = function ( {' }];
  const r = await app.call('apply', { changes: changesBad });
  assert.equal(r.error?.code, 'LP_ERR_PATCH_SYNTAX');
  assert.match(r.error!.message, /^src\/rates\.ts/);
});

test('top-level throw, endless loop, rejected/stuck exported promise and kind change are refused', async () => {
  assert.match(
    await rejected({ 'src/rates.ts': ratesWith("throw new Error('boom at load');", 'A7') }, 'LP_ERR_PATCH_LOAD'),
    /src\/rates\.ts: boom at load/,
  );
  assert.match(
    await rejected({ 'src/rates.ts': ratesWith('const spin = (() => { while (true) {} })();', 'A7') }, 'LP_ERR_PATCH_TIMEOUT', {
      loadTimeoutMs: 300,
    }),
    /src\/rates\.ts/,
  );
  assert.match(
    await rejected({ 'src/rates.ts': ratesWith("export const ready = Promise.reject(new Error('no db'));", 'A7') }, 'LP_ERR_PATCH_LOAD'),
    /ready.*no db/,
  );
  assert.match(
    await rejected({ 'src/rates.ts': ratesWith('export const ready = new Promise(() => {});', 'A7') }, 'LP_ERR_PATCH_TIMEOUT', {
      loadTimeoutMs: 200,
    }),
    /ready/,
  );
  const kind = src('src/rates.ts').replace(/export function tag\(\)[^}]*}/, "export const tag = 'A7';");
  assert.match(await rejected({ 'src/rates.ts': kind }, 'LP_ERR_PATCH_EXPORT_KIND'), /"tag" changed from function to value/);
  // A module that fails after another one loaded fine: neither is committed.
  assert.match(
    await rejected(
      { 'src/quote.ts': src('src/quote.ts').replace("'B1'", "'B7'"), 'src/rates.ts': ratesWith('throw new Error("late");', 'A7') },
      'LP_ERR_PATCH_LOAD',
    ),
    /late/,
  );
});

test('verify runs pinned to the staged generation; a veto, throw or hang refuses the patch', async () => {
  const verifyOk = transpile(
    '__verify__.ts',
    "import { tag } from './src/rates';\nexport function newTag() { if (tag() !== 'A5') throw new Error('saw ' + tag()); }",
  );
  const stuck = transpile('__verify__.ts', 'export function spin() { while (true) {} }');
  const never = transpile('__verify__.ts', 'export function wait() { return new Promise(() => {}); }');
  for (const [js, re] of [
    [verifyOk, /newTag.*saw A6/],
    [stuck, /spin/],
    [never, /wait/],
  ] as const) {
    const r = await app.call('apply', {
      changes: changes({ 'src/rates.ts': ratesWith('', 'A6') }),
      opts: { verifyJs: js, verifyTimeoutMs: 200 },
    });
    assert.equal(r.error?.code, 'LP_ERR_PATCH_VERIFY');
    assert.match(r.error!.message, re);
  }
  assert.deepEqual(await app.get('/mix'), { a: 'A1', b: 'B1' });
  await app.ok('apply', { changes: changes({ 'src/rates.ts': ratesWith('', 'A5') }), opts: { verifyJs: verifyOk } });
  assert.deepEqual(await app.get('/mix'), { a: 'A5', b: 'B1' });
  await app.ok('rollback');
});

test('kept state survives a new version; a shape change migrates at commit; a failing migrate changes nothing', async () => {
  const h1 = (await app.get('/hits')).hits;
  const same = src('src/state.ts').replace('store.n += 1;', 'store.n += 10;');
  await app.ok('apply', { changes: changes({ 'src/state.ts': same }) });
  assert.equal((await app.get('/hits')).hits, h1 + 10);
  const bad =
    "import { keep } from 'livepatch';\nconst s = keep('store', () => ({ count: 0 }), { shape: 2, migrate: () => { throw new Error('cannot convert'); } });\nexport function hits(): number { return ++s.count; }";
  const r = await app.call('apply', { changes: changes({ 'src/state.ts': bad }) });
  assert.equal(r.error?.code, 'LP_ERR_PATCH_MIGRATE');
  assert.match(r.error!.message, /src\/state\.ts.*store.*cannot convert/);
  assert.equal((await app.get('/hits')).hits, h1 + 20, 'live value untouched');
  const good =
    "import { keep } from 'livepatch';\nconst s = keep('store', () => ({ count: 0 }), { shape: 2, migrate: (p: any) => ({ count: p.n * 100 }) });\nexport function hits(): number { return ++s.count; }";
  await app.ok('apply', { changes: changes({ 'src/state.ts': good }) });
  assert.equal((await app.get('/hits')).hits, (h1 + 20) * 100 + 1);
  // Code that is not a live module (here the test's driver) gets init(), as it would without livepatch.
  assert.equal(await app.ok('keep-outside'), 1);
});

test('a patch can add a module; a later patch of it reaches its importers', async () => {
  const extra = (v: string): string => `export function extraTag(): string { return '${v}'; }`;
  const rates = src('src/rates.ts').replace('import', 'import').replace("return 'A1';", 'return extraTag();');
  await app.ok('apply', {
    changes: changes({ 'src/extra/index.ts': extra('X1'), 'src/rates.ts': `import { extraTag } from './extra';\n${rates}` }),
  });
  assert.equal((await app.get('/mix')).a, 'X1');
  const s = await app.ok('state');
  assert.ok(s.modules.includes('src/extra/index.ts'));
  await app.ok('apply', { changes: changes({ 'src/extra/index.ts': extra('X2') }) });
  assert.equal((await app.get('/mix')).a, 'X2');
  await app.ok('rollback', { to: 1 });
  assert.equal((await app.get('/mix')).a, 'A1');
});

test('a stage whose base is no longer current cannot commit; a discarded stage leaves no trace', async () => {
  const exportsBefore = (await app.ok('state', { exportsOf: 'src/rates.ts' })).exports;
  const staged = await app.ok('stage', { changes: changes({ 'src/rates.ts': ratesWith('export function added() { return 1; }', 'A8') }) });
  assert.equal((await app.ok('state')).multi, true);
  await app.ok('apply', { changes: changes({ 'src/quote.ts': src('src/quote.ts').replace("'B1'", "'B8'") }) });
  const r = await app.call('commit', { stageId: staged.stageId });
  assert.equal(r.error?.code, 'LP_ERR_PATCH_CONFLICT');
  assert.deepEqual((await app.ok('state', { exportsOf: 'src/rates.ts' })).exports, exportsBefore);
  const again = await app.ok('stage', { changes: changes({ 'src/rates.ts': ratesWith('export function added() { return 1; }', 'A8') }) });
  await app.ok('discard', { stageId: again.stageId });
  const s = await app.ok('state', { exportsOf: 'src/rates.ts' });
  assert.deepEqual(s.exports, exportsBefore);
  assert.equal(s.multi, false);
  assert.deepEqual(await app.get('/mix'), { a: 'A1', b: 'B8' });
});

test('held requests wait (not dropped) until the hold ends', async () => {
  await app.ok('hold', { ms: 400 });
  let done = false;
  const pending = app.get('/health').then((r) => ((done = true), r));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(done, false, 'request still held');
  assert.deepEqual(await pending, { ok: true });
});
