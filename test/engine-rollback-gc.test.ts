/**
 * Rollback and collection in a real child app: rollback restores earlier behaviour and the very same
 * version records and hashes; after many commits and drains, old generations' module instances are
 * garbage collected (watched with a FinalizationRegistry under --expose-gc, not inferred).
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
const rates = (label: string): ReturnType<typeof changes> =>
  changes({
    'src/rates.ts':
      src('src/rates.ts').replace("'rates-v1'", `'${label}'`) + `\nexport const ballast = new Array(200000).fill('${label}');\n`,
  });

before(async () => {
  project = createProject('engine');
  app = await startEngineApp(project.root, { execArgv: ['--expose-gc'] });
});
after(async () => {
  await app?.stop();
  project?.cleanup();
});

test('rollback restores the previous generation, then any named one, with the same records and hashes', async () => {
  const v1 = (await app.ok('state')).versions.find((v: any) => v.module === 'src/rates.ts');
  await app.ok('apply', { changes: rates('L2') });
  const g2 = (await app.ok('state')).versions.find((v: any) => v.module === 'src/rates.ts');
  await app.ok('apply', { changes: rates('L3') });
  assert.deepEqual(await app.get('/label'), { label: 'L3' });

  const back = await app.ok('rollback', { meta: { who: 'test' } });
  assert.equal(back.generation, 4);
  assert.equal(back.previousGeneration, 3);
  assert.deepEqual(back.changed, [{ module: 'src/rates.ts', version: 2, hash: g2.hash }]);
  assert.deepEqual(await app.get('/label'), { label: 'L2' });

  await app.ok('rollback', { to: 1 });
  assert.deepEqual(await app.get('/label'), { label: 'rates-v1' });
  const s = await app.ok('state');
  assert.deepEqual(
    s.versions.find((v: any) => v.module === 'src/rates.ts'),
    v1,
  );
  const last = s.history[s.history.length - 1];
  assert.equal(last.kind, 'rollback');
  assert.equal(last.rollbackTo, 1);
  assert.equal(last.current, true);

  // Version 2 was released (its generation drained), so it is re-evaluated from its stored JS.
  await app.ok('rollback', { to: 2 });
  assert.deepEqual(await app.get('/label'), { label: 'L2' });
  assert.equal((await app.ok('state')).versions.find((v: any) => v.module === 'src/rates.ts').hash, g2.hash);
});

test('re-applying a source a module already had is that version again, not a new one', async () => {
  await app.ok('apply', { changes: rates('R1') });
  const r1 = (await app.ok('state')).versions.find((v: any) => v.module === 'src/rates.ts');
  await app.ok('apply', { changes: rates('R2') });
  const r2 = (await app.ok('state')).versions.find((v: any) => v.module === 'src/rates.ts');
  assert.equal(r2.version, r1.version + 1);
  await app.ok('apply', { changes: rates('R1') });
  assert.deepEqual(
    (await app.ok('state')).versions.find((v: any) => v.module === 'src/rates.ts'),
    r1,
  );
  assert.deepEqual(await app.get('/label'), { label: 'R1' });
});

test('rollback to a generation that does not exist is refused and changes nothing', async () => {
  const before = (await app.ok('state')).current;
  for (const to of [0, before, before + 5]) {
    const r = await app.call('rollback', { to });
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, 'LP_ERR_ROLLBACK_TARGET');
  }
  assert.equal((await app.ok('state')).current, before);
});

test('after many commits and drains, old generations are collected', async () => {
  const first = (await app.ok('state')).current;
  const commits = 25;
  const quote = src('src/quote.ts');
  for (let i = 0; i < commits; i++) {
    const counter = changes({
      'src/quote.ts': quote.replace('`v1:', `\`G${i}:`) + `\nexport const ballast = new Array(100000).fill(${i});\n`,
    });
    await app.ok('apply', { changes: [...rates(`G${i}`), ...counter] });
    await app.get('/label');
    assert.match((await app.get('/counter')).label, new RegExp(`^G${i}:`));
  }
  assert.deepEqual(await app.get('/label'), { label: `G${commits - 1}` });
  const s = await app.ok('state');
  assert.equal(s.live.length, 1, 'only the current generation is live');
  const gc = await app.ok('gc');
  const ours = gc.collected.filter((l: string) => Number(l.split(':')[0]) > first);
  // Every generation made here except the current one must have been collected: both modules'
  // exports and the Counter class whose methods ran through the facade's dispatch.
  for (const what of ['src/rates.ts', 'src/quote.ts', 'src/quote.ts:Counter']) {
    const n = ours.filter((l: string) => l.slice(l.indexOf(':') + 1) === what).length;
    assert.ok(n >= commits - 1, `${what}: collected ${n} of ${commits - 1}`);
  }
  assert.ok(!gc.collected.includes(`${s.current}:src/rates.ts`), 'the current generation is not collected');
  assert.ok(gc.heapUsed < 200 * 1024 * 1024, `heap ${gc.heapUsed}`);
});
