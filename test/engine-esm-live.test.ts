/**
 * ES modules are live modules with the CommonJS contract, in a real child app (`"type": "module"`,
 * tsc `module: NodeNext`, `-r livepatch/register`): a two-module commit under load mixes no versions,
 * named, namespace, default and re-exported bindings captured before the patch reach the new code,
 * class instances get patched methods, kept state carries over, rollback restores the very records,
 * a changed exported value (which importers' bindings cannot follow) is refused, and released
 * generations are garbage-collected (FinalizationRegistry under --expose-gc).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, type Project } from './helpers/project';
import { changes as tsChanges, startEngineApp, type EngineApp } from './helpers/engine-app';

let project: Project;
let app: EngineApp;
const src = (rel: string): string => readFileSync(join(project.root, rel), 'utf8');
const changes = (files: Record<string, string>): ReturnType<typeof tsChanges> => tsChanges(files, { esm: true });

before(async () => {
  project = createProject('engine-esm');
  app = await startEngineApp(project.root, { execArgv: ['--expose-gc'] });
});
after(async () => {
  await app?.stop();
  project?.cleanup();
});

test('deployed ES modules are live with ids of their TypeScript sources, version 1', async () => {
  const s = await app.ok('state', { exportsOf: 'src/quote.ts' });
  assert.equal(s.current, 1);
  assert.deepEqual(s.modules, ['src/index.ts', 'src/main.ts', 'src/quote.ts', 'src/rates.ts', 'src/server.ts', 'src/state.ts']);
  assert.deepEqual(
    [...s.exports].sort((x: any, y: any) => x.name.localeCompare(y.name)),
    [
      { name: 'Counter', kind: 'class' },
      { name: 'default', kind: 'function' },
      { name: 'quote', kind: 'function' },
      { name: 'tag', kind: 'function' },
    ],
  );
  assert.equal(s.multi, false);
  assert.doesNotMatch(app.stderr(), /not live/);
});

test('a two-module commit under 3000 requests (100 concurrent) never mixes versions', async () => {
  const total = 3000;
  let started = 0;
  let commitAt = -1;
  const results: { i: number; a: string; b: string }[] = [];
  const patch = changes({
    'src/rates.ts': src('src/rates.ts').replace("'A1'", "'A2'"),
    'src/quote.ts': src('src/quote.ts').replace("'B1'", "'B2'"),
  });
  let committed: Promise<unknown> | undefined;
  const worker = async (): Promise<void> => {
    while (started < total) {
      const i = started++;
      if (i === 1000) committed = app.ok('apply', { changes: patch }).then(() => (commitAt = started));
      const r = await app.get('/mix');
      results.push({ i, a: r.a, b: r.b });
    }
  };
  await Promise.all(Array.from({ length: 100 }, worker));
  await committed;
  assert.equal(results.length, total);
  assert.deepEqual(
    results.filter((r) => r.a.slice(1) !== r.b.slice(1)),
    [],
    'responses mixing versions',
  );
  const later = results.filter((r) => r.i >= commitAt);
  assert.ok(commitAt > 0 && later.length > 0);
  assert.ok(
    later.every((r) => r.a === 'A2' && r.b === 'B2'),
    'requests started after the commit use the new versions',
  );
  assert.ok(
    results.some((r) => r.a === 'A1'),
    'some requests ran on generation 1',
  );
  assert.deepEqual((await app.ok('state')).history[1].changed, ['src/quote.ts', 'src/rates.ts']);
});

test('named, namespace, default and re-exported bindings captured before the patch reach the new code', async () => {
  assert.deepEqual(await app.get('/rate'), { rate: 1.1 });
  await app.ok('apply', {
    changes: changes({
      'src/rates.ts': src('src/rates.ts').replace("'A1'", "'A3'").replace('1.1 : 1', '1.25 : 1'),
      'src/quote.ts': src('src/quote.ts').replace("'quote-v1'", "'quote-v3'").replace("'B1'", "'B3'"),
    }),
  });
  assert.deepEqual(await app.get('/rate'), { rate: 1.25 }, 'a named import binding');
  assert.deepEqual(await app.get('/captured'), { tag: 'A3' }, 'a function taken from the namespace at start');
  assert.deepEqual(await app.get('/quote?c=EUR&a=100'), { total: 125 }, 'an unchanged module calling the patched one');
  assert.deepEqual(await app.get('/default'), { describe: 'quote-v3' }, 'the default export');
  assert.deepEqual(await app.get('/reexport'), { a: 'A3', b: 'B3' }, 'export * and export { … } from');
});

test('an existing class instance keeps its state and gets the patched method; instanceof holds; kept state carries over', async () => {
  const first = await app.get('/counter');
  const hits = (await app.get('/hits')).hits;
  await app.ok('apply', {
    changes: changes({
      'src/quote.ts': src('src/quote.ts').replace('`v1:${this.count}`', '`v2:${this.count}`'),
      'src/state.ts': src('src/state.ts').replace('store.n += 1;', 'store.n += 10;'),
    }),
  });
  const next = await app.get('/counter');
  assert.equal(next.hit, first.hit + 1, 'state kept');
  assert.equal(next.label, `v2:${next.hit}`);
  assert.equal(next.isCounter, true);
  assert.deepEqual(await app.get('/hits'), { hits: hits + 10 }, 'keep() handed the store to the new version');
});

test('a changed exported value is refused before anything runs: importers hold the running binding', async () => {
  const before = (await app.ok('state')).current;
  const r = await app.call('apply', { changes: changes({ 'src/rates.ts': src('src/rates.ts').replace("'rates-v1'", "'rates-v2'") }) });
  assert.equal(r.ok, false);
  assert.equal(r.error?.code, 'LP_ERR_PATCH_UNREACHABLE');
  assert.match(r.error!.message, /src\/rates\.ts\(1,1\).*export RATES_LABEL changed value/);
  assert.equal((await app.ok('state')).current, before, 'nothing committed');
  assert.deepEqual(await app.get('/label'), { label: 'rates-v1' });
});

test('a new version with top-level await is refused before anything runs, with the reason', async () => {
  const r = await app.call('apply', {
    changes: changes({ 'src/main.ts': `${src('src/main.ts')}\nexport function extra(): number {\n  return 1;\n}\n` }),
  });
  assert.equal(r.ok, false);
  assert.equal(r.error?.code, 'LP_ERR_PATCH_UNREACHABLE');
  assert.match(
    r.error!.message,
    /src\/main\.ts: error LP_ERR_PATCH_UNREACHABLE: top-level await is not supported in a new version of an ES module/,
  );
});

test('a request in flight across a commit finishes on its generation, which is then released', async () => {
  const gen = (await app.ok('state')).current;
  // Long enough to still be in flight when the commit lands, even on a loaded machine.
  const slow = app.get('/slow?ms=2500');
  await new Promise((r) => setTimeout(r, 100));
  await app.ok('apply', {
    changes: changes({
      'src/rates.ts': src('src/rates.ts').replace("'A1'", "'A9'"),
      'src/quote.ts': src('src/quote.ts').replace("'B1'", "'B9'"),
    }),
  });
  assert.equal((await app.ok('state')).live[0].inflight, 1);
  assert.deepEqual(await app.get('/mix'), { a: 'A9', b: 'B9' });
  const r = await slow;
  assert.notEqual(r.a, 'A9');
  assert.notEqual(r.b, 'B9');
  const end = await app.ok('state');
  assert.deepEqual(
    end.live.map((l: any) => l.generation),
    [gen + 1],
  );
  assert.equal(end.multi, false);
});

test('rollback restores the previous generation with the same records and hashes', async () => {
  const before = await app.ok('state');
  const v = (s: any, id: string): any => s.versions.find((x: any) => x.module === id);
  await app.ok('apply', { changes: changes({ 'src/rates.ts': src('src/rates.ts').replace("'A1'", "'R2'") }) });
  assert.deepEqual((await app.get('/mix')).a, 'R2');
  await app.ok('rollback');
  const after = await app.ok('state');
  assert.deepEqual(v(after, 'src/rates.ts'), v(before, 'src/rates.ts'));
  assert.deepEqual(v(after, 'src/quote.ts'), v(before, 'src/quote.ts'));
  assert.equal((await app.get('/mix')).a, 'A9');
  await app.ok('rollback', { to: 1 });
  const deployed = await app.ok('state');
  assert.equal(v(deployed, 'src/rates.ts').version, 1);
  assert.deepEqual(await app.get('/mix'), { a: 'A1', b: 'B1' });
});

test('after many commits and drains, released generations of ES modules are collected', async () => {
  const first = (await app.ok('state')).current;
  const commits = 20;
  for (let i = 0; i < commits; i++) {
    await app.ok('apply', {
      changes: changes({
        'src/rates.ts':
          src('src/rates.ts').replace("'A1'", `'G${i}'`) +
          `\nconst ballast = new Array(100000).fill(${i});\nexport function weight(): number {\n  return ballast.length;\n}\n`,
        'src/quote.ts': src('src/quote.ts').replace('`v1:', `\`G${i}:`),
      }),
    });
    assert.equal((await app.get('/mix')).a, `G${i}`);
    assert.match((await app.get('/counter')).label, new RegExp(`^G${i}:`));
  }
  const s = await app.ok('state');
  assert.equal(s.live.length, 1, 'only the current generation is live');
  const gc = await app.ok('gc');
  const ours = gc.collected.filter((l: string) => Number(l.split(':')[0]) > first);
  for (const what of ['src/rates.ts', 'src/quote.ts', 'src/quote.ts:Counter']) {
    const n = ours.filter((l: string) => l.slice(l.indexOf(':') + 1) === what).length;
    assert.ok(n >= commits - 1, `${what}: collected ${n} of ${commits - 1}`);
  }
  assert.ok(!gc.collected.includes(`${s.current}:src/rates.ts`), 'the current generation is not collected');
});
