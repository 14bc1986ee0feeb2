/**
 * The engine under ts-node (`node -r ts-node/register -r livepatch/register src/main.ts`): `.ts`
 * modules loaded directly are live with their own paths as ids, and patches reach them.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { createProject, type Project } from './helpers/project';
import { changes, startEngineApp, type EngineApp } from './helpers/engine-app';

let project: Project;
let app: EngineApp;
const src = (rel: string): string => readFileSync(join(project.root, rel), 'utf8');

before(async () => {
  project = createProject('engine');
  app = await startEngineApp(project.root, {
    before: [require.resolve('ts-node/register')],
    entry: 'src/main.ts',
    env: { TS_NODE_TRANSPILE_ONLY: '1', TS_NODE_PROJECT: join(project.root, 'tsconfig.json') },
  });
});
after(async () => {
  await app?.stop();
  project?.cleanup();
});

test('ts-node modules are live, hashed from their source, and take patches and rollbacks', async () => {
  const s = await app.ok('state');
  assert.ok(s.modules.includes('src/rates.ts') && s.modules.includes('src/server.ts'));
  const rates = s.versions.find((v: any) => v.module === 'src/rates.ts');
  assert.equal(rates.hash, createHash('sha256').update(src('src/rates.ts')).digest('hex'));
  const counter = await app.get('/counter');
  await app.ok('apply', {
    changes: changes({
      'src/rates.ts': src('src/rates.ts').replace("'A1'", "'A2'"),
      'src/quote.ts': src('src/quote.ts').replace("'B1'", "'B2'").replace('`v1:', '`v2:'),
    }),
  });
  assert.deepEqual(await app.get('/mix'), { a: 'A2', b: 'B2' });
  assert.deepEqual(await app.get('/captured'), { tag: 'A2' });
  const c2 = await app.get('/counter');
  assert.equal(c2.label, `v2:${counter.hit + 1}`);
  await app.ok('rollback');
  assert.deepEqual(await app.get('/mix'), { a: 'A1', b: 'B1' });
});
