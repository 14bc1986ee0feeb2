/**
 * The live module engine inside a real child app (`-r livepatch/register`): a commit under load never
 * mixes versions within one request, and captured references, class instances and exported values all
 * reach the new generation.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, type Project } from './helpers/project';
import { changes, startEngineApp, type EngineApp } from './helpers/engine-app';

let project: Project;
let app: EngineApp;
const src = (rel: string): string => readFileSync(join(project.root, rel), 'utf8');

before(async () => {
  project = createProject('engine');
  app = await startEngineApp(project.root);
});
after(async () => {
  await app?.stop();
  project?.cleanup();
});

test('deployed modules are live with ids of their TypeScript sources, version 1', async () => {
  const s = await app.ok('state', { exportsOf: 'src/quote.ts' });
  assert.equal(s.current, 1);
  for (const id of ['src/main.ts', 'src/quote.ts', 'src/rates.ts', 'src/server.ts', 'src/state.ts']) assert.ok(s.modules.includes(id), id);
  const q = s.versions.find((v: any) => v.module === 'src/quote.ts');
  assert.equal(q.version, 1);
  assert.equal(q.patched, false);
  assert.deepEqual(
    [...s.exports].sort((x: any, y: any) => x.name.localeCompare(y.name)),
    [
      { name: 'Counter', kind: 'class' },
      { name: 'quote', kind: 'function' },
      { name: 'tag', kind: 'function' },
    ],
  );
  assert.equal(s.multi, false);
});

test('a commit under 3000 requests (100 concurrent) never mixes versions; later requests see the new ones', async () => {
  const total = 3000;
  const concurrency = 100;
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
  await Promise.all(Array.from({ length: concurrency }, worker));
  await committed;
  assert.equal(results.length, total);
  const mixed = results.filter((r) => r.a.slice(1) !== r.b.slice(1));
  assert.deepEqual(mixed, [], 'responses mixing versions');
  const after = results.filter((r) => r.i >= commitAt);
  assert.ok(commitAt > 0 && after.length > 0);
  assert.ok(
    after.every((r) => r.a === 'A2' && r.b === 'B2'),
    'requests started after the commit use the new versions',
  );
  assert.ok(
    results.some((r) => r.a === 'A1'),
    'some requests ran on generation 1',
  );
  const s = await app.ok('state');
  assert.equal(s.current, 2);
  assert.deepEqual(s.history[1].changed, ['src/quote.ts', 'src/rates.ts']);
  assert.equal(s.versions.find((v: any) => v.module === 'src/rates.ts').version, 2);
});

test('a destructured require and a router-captured function reach the patched code', async () => {
  assert.deepEqual(await app.get('/rate'), { rate: 1.1 });
  const before = await app.get('/captured');
  await app.ok('apply', {
    changes: changes({ 'src/rates.ts': src('src/rates.ts').replace("'A1'", "'A3'").replace('1.1 : 1', '1.25 : 1') }),
  });
  assert.notEqual(before.tag, 'A3');
  assert.deepEqual(await app.get('/rate'), { rate: 1.25 });
  assert.deepEqual(await app.get('/captured'), { tag: 'A3' });
  // quote() (unchanged module) calls rate() through the facade: it sees the new rate too.
  assert.deepEqual(await app.get('/quote?c=EUR&a=100'), { total: 125 });
});

test('an existing class instance keeps its state and gets the patched method; instanceof holds', async () => {
  const first = await app.get('/counter');
  assert.match(first.label, /^v1:/);
  assert.equal(first.isCounter, true);
  await app.ok('apply', {
    changes: changes({ 'src/quote.ts': src('src/quote.ts').replace('`v1:${this.count}`', '`v2:${this.count}`') }),
  });
  const next = await app.get('/counter');
  assert.equal(next.hit, first.hit + 1, 'state kept');
  assert.equal(next.label, `v2:${next.hit}`);
  assert.equal(next.isCounter, true);
});

test('an exported constant reads per generation', async () => {
  assert.deepEqual(await app.get('/label'), { label: 'rates-v1' });
  await app.ok('apply', { changes: changes({ 'src/rates.ts': src('src/rates.ts').replace("'rates-v1'", "'rates-v2'") }) });
  assert.deepEqual(await app.get('/label'), { label: 'rates-v2' });
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
  const mid = await app.ok('state');
  assert.deepEqual(
    mid.live.map((l: any) => l.generation),
    [gen, gen + 1],
  );
  assert.equal(mid.live[0].inflight, 1);
  assert.equal(mid.multi, true);
  assert.deepEqual(await app.get('/mix'), { a: 'A9', b: 'B9' }, 'a request arriving during the drain gets the new generation');
  const r = await slow;
  assert.notEqual(r.a, 'A9');
  assert.notEqual(r.b, 'B9');
  assert.deepEqual(await app.get('/mix'), { a: 'A9', b: 'B9' });
  const end = await app.ok('state');
  assert.deepEqual(
    end.live.map((l: any) => l.generation),
    [gen + 1],
  );
  assert.equal(end.multi, false, 'single generation again: no AsyncLocalStorage lookups');
});

test('a request whose client goes away stops counting as in flight', async () => {
  const gen = (await app.ok('state')).current;
  const ac = new AbortController();
  const slow = fetch(`http://127.0.0.1:${app.httpPort}/slow?ms=2000`, { signal: ac.signal }).catch(() => 'aborted');
  await new Promise((r) => setTimeout(r, 100));
  await app.ok('apply', { changes: changes({ 'src/rates.ts': src('src/rates.ts').replace("'A1'", "'A10'") }) });
  assert.equal((await app.ok('state')).live.find((l: any) => l.generation === gen)?.inflight, 1);
  ac.abort();
  assert.equal(await slow, 'aborted');
  let live: any[] = [];
  for (let i = 0; i < 50; i++) {
    live = (await app.ok('state')).live;
    if (live.length === 1) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(
    live.map((l) => l.generation),
    [gen + 1],
    'released without waiting for the handler',
  );
});
