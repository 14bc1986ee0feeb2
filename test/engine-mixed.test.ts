/**
 * A mixed app: ES modules importing a CommonJS module (`.cts` → `.cjs`) that itself `require()`s an
 * ES module (`.mts` → `.mjs`). Every one of them is live where Node lets livepatch see it load, and
 * a patch of each reaches its callers across the format boundary; where Node gives livepatch no
 * view of a `require()`d ES module (Node 20 has no `module.registerHooks`), its patch is refused
 * with LP_ERR_PATCH_NOT_LIVE instead of committing a copy nothing reaches.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Module from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, type Project } from './helpers/project';
import { changes, startEngineApp, type EngineApp } from './helpers/engine-app';

const inThreadHooks = typeof (Module as unknown as { registerHooks?: unknown }).registerHooks === 'function';
let project: Project;
let app: EngineApp;
const src = (rel: string): string => readFileSync(join(project.root, rel), 'utf8');

before(async () => {
  project = createProject('engine-mixed');
  app = await startEngineApp(project.root);
});
after(async () => {
  await app?.stop();
  project?.cleanup();
});

test('ES and CommonJS modules of one app are live, with their TypeScript ids', async () => {
  assert.deepEqual(await app.get('/'), { tags: 'L1+M1' });
  const s = await app.ok('state');
  const expected = ['src/api.ts', 'src/legacy.cts', 'src/main.ts', ...(inThreadHooks ? ['src/modern.mts'] : [])];
  assert.deepEqual(s.modules, expected);
});

test('a patch of the CommonJS module reaches the ES module that imported it', async () => {
  await app.ok('apply', { changes: changes({ 'src/legacy.cts': src('src/legacy.cts').replace("'L1'", "'L2'") }) });
  assert.deepEqual(await app.get('/'), { tags: 'L2+M1' });
});

test("a new version of an ES module imports the CommonJS module's live exports", async () => {
  await app.ok('apply', { changes: changes({ 'src/api.ts': src('src/api.ts').replace('}+${', '}&${') }, { esm: true }) });
  assert.deepEqual(await app.get('/'), { tags: 'L2&M1' });
});

test('a require()d ES module is live where Node shows it to livepatch, and refused where not', async () => {
  const patch = changes({ 'src/modern.mts': src('src/modern.mts').replace("'M1'", "'M2'") }, { esm: true });
  if (inThreadHooks) {
    await app.ok('apply', { changes: patch });
    assert.deepEqual(await app.get('/'), { tags: 'L2&M2' });
  } else {
    const r = await app.call('apply', { changes: patch });
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, 'LP_ERR_PATCH_NOT_LIVE');
    assert.deepEqual(await app.get('/'), { tags: 'L2&M1' }, 'nothing changed');
  }
});
