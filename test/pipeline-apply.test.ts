/**
 * Patch sets the pipeline applies, against a real app process (pipeline over IPC, no agent): a new
 * module added by a patch, keep() state surviving a patch, a migration reshaping kept state, a
 * duplicate patch id not applied twice, two-phase stage/commit with abort and TTL expiry, dry runs,
 * one patch at a time, and rollback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProject } from './helpers/project';
import { startPipelineApp, type PipelineApp } from './helpers/pipeline-app';

const project = createProject('pipeline');
const src = (f: string) => readFileSync(join(project.root, 'src', f), 'utf8');
const quoteTs = src('quote.ts');
const storeTs = src('store.ts');
let app: PipelineApp;

test.before(async () => {
  app = await startPipelineApp(project.root, {});
});
test.after(async () => {
  await app?.stop();
  project.cleanup();
});

async function ok(op: string, args: unknown) {
  const r = await app.op(op, args);
  assert.equal(r.ok, true, JSON.stringify(r.error));
  return r;
}

test('a patch can add a new module and use it from a patched one', async () => {
  const r = await ok('apply', {
    patch: {
      message: 'fees',
      files: {
        'src/fees.ts': 'export function fee(amount: number): number {\n  return amount > 100 ? 1 : 2;\n}\n',
        'src/quote.ts': quoteTs
          .replace("import { rate } from './rates';", "import { rate } from './rates';\nimport { fee } from './fees';")
          .replace('amount * rate(currency) * 100', '(amount * rate(currency) + fee(amount)) * 100'),
      },
    },
  });
  assert.equal(r.result.generation, 2);
  assert.deepEqual(r.result.changed.map((c: { module: string }) => c.module).sort(), ['src/fees.ts', 'src/quote.ts']);
  assert.deepEqual(await app.get('/quote?c=EUR&a=10'), { total: 13 });
  assert.ok(
    r.progress.some((p) => p.step === 'check' && /starting the type checker/.test(p.message)),
    'cold start announced',
  );
  assert.ok(
    r.progress.some((p) => p.step === 'check' && p.fraction !== undefined),
    'check progress has a fraction',
  );
  assert.deepEqual([...new Set(r.progress.map((p) => p.step))], ['check', 'load', 'commit'], 'steps in order');
});

test('keep() state survives a patch of its module', async () => {
  await app.get('/visit');
  assert.deepEqual(await app.get('/visit'), { count: 2, version: 'v1' });
  await ok('apply', { patch: { files: { 'src/store.ts': storeTs.replace("version: 'v1'", "version: 'v2'") } } });
  assert.deepEqual(await app.get('/visit'), { count: 3, version: 'v2' });
});

test('a migration reshapes kept state when the shape changes', async () => {
  const v3 = [
    "import { keep } from 'livepatch';",
    'interface Visits { total: number; history: number[] }',
    "const visits = keep<Visits>('visits', () => ({ total: 0, history: [] }), {",
    '  shape: 2,',
    '  migrate: (prev) => ({ total: (prev as { count: number }).count * 10, history: [] }),',
    '});',
    'export function visit(): unknown {',
    '  visits.total += 1;',
    '  visits.history.push(visits.total);',
    "  return { total: visits.total, history: visits.history.length, version: 'v3' };",
    '}',
  ].join('\n');
  await ok('apply', { patch: { files: { 'src/store.ts': v3 } } });
  assert.deepEqual(await app.get('/visit'), { total: 31, history: 1, version: 'v3' });
});

test('a duplicate patch id is not applied twice', async () => {
  const patch = { id: 'tag-b2', files: { 'src/quote.ts': quoteTs.replace("return 'B1'", "return 'B2'") } };
  const first = await ok('apply', { patch });
  const gen = first.result.generation;
  const again = await app.op('apply', { patch });
  assert.equal(again.ok, false);
  assert.equal(again.error!.code, 'LP_ERR_PATCH_DUPLICATE');
  assert.equal((await app.op('generation')).result, gen);
  assert.deepEqual(await app.get('/tag'), { tag: 'B2' });
});

test('stage holds a set until commit; abort and TTL expiry discard it', async () => {
  const gen = (await app.op('generation')).result;
  const files = { 'src/quote.ts': quoteTs.replace("return 'B1'", "return 'B3'") };
  const staged = await ok('stage', { patch: { files } });
  assert.equal(staged.result.baseGeneration, gen);
  assert.deepEqual(await app.get('/tag'), { tag: 'B2' }, 'staged code is not live');
  await ok('abort', { stageId: staged.result.stageId });
  const gone = await app.op('commit', { stageId: staged.result.stageId });
  assert.equal(gone.error!.code, 'LP_ERR_PATCH_STAGE_UNKNOWN');

  const short = await ok('stage', { patch: { files }, ttlMs: 200 });
  await new Promise((r) => setTimeout(r, 600));
  assert.equal((await app.op('commit', { stageId: short.result.stageId })).error!.code, 'LP_ERR_PATCH_STAGE_UNKNOWN');

  const s = await ok('stage', { patch: { files } });
  const c = await ok('commit', { stageId: s.result.stageId });
  assert.equal(c.result.generation, gen + 1);
  assert.deepEqual(await app.get('/tag'), { tag: 'B3' });
});

test('a set staged on an older generation conflicts at commit', async () => {
  const a = await ok('stage', { patch: { files: { 'src/quote.ts': quoteTs.replace("return 'B1'", "return 'B4'") } } });
  const b = await ok('stage', { patch: { files: { 'src/quote.ts': quoteTs.replace("return 'B1'", "return 'B5'") } } });
  await ok('commit', { stageId: a.result.stageId });
  const stale = await app.op('commit', { stageId: b.result.stageId });
  assert.equal(stale.error!.code, 'LP_ERR_PATCH_CONFLICT');
  assert.deepEqual(await app.get('/tag'), { tag: 'B4' });
});

test('only one patch at a time: a concurrent apply is refused as busy', async () => {
  const files = (t: string) => ({ 'src/quote.ts': quoteTs.replace("return 'B1'", `return '${t}'`) });
  const both = await ok('apply-both', { first: { files: files('B6') }, second: { files: files('B7') } });
  const [x, y] = both.result as { ok: boolean; error?: { code: string } }[];
  assert.deepEqual([x!.ok, y!.ok], [true, false], 'the first holds the lock, the second is refused');
  assert.equal(y!.error!.code, 'LP_ERR_PATCH_BUSY');
  assert.deepEqual(await app.get('/tag'), { tag: 'B6' });
});

test('dry run checks and loads but does not commit; rollback restores the previous generation', async () => {
  const gen = (await app.op('generation')).result;
  const dry = await ok('apply', { patch: { files: { 'src/quote.ts': quoteTs.replace("return 'B1'", "return 'B8'") } }, dryRun: true });
  assert.equal(dry.result.dryRun, true);
  assert.equal((await app.op('generation')).result, gen);
  const tagBefore = await app.get('/tag');
  await ok('apply', { patch: { files: { 'src/quote.ts': quoteTs.replace("return 'B1'", "return 'B9'") } } });
  assert.deepEqual(await app.get('/tag'), { tag: 'B9' });
  const rb = await ok('rollback', {});
  assert.equal(rb.result.generation, gen + 2);
  assert.deepEqual(await app.get('/tag'), tagBefore);
});
