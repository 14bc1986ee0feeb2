/**
 * Journal replay across restarts of a real app: committed patches and rollbacks are re-applied in
 * order before the first request is served, patch ids stay applied (no duplicates), and after a
 * redeploy that changed a patched module the stale patch is not applied but reported as drift, by
 * the pipeline and by `livepatch status` through the real agent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 as sha } from '../shared/hash';
import type { StatusResult } from '../shared/ops';
import { createProject, createTokens, runCli, startApp } from './helpers/project';
import { startPipelineApp } from './helpers/pipeline-app';

const project = createProject('pipeline');
const journalDir = join(project.root, '.journal');
const src = (f: string) => readFileSync(join(project.root, 'src', f), 'utf8');
const ratesTs = src('rates.ts');
const quoteTs = src('quote.ts');
const withTag = (t: string) => ({ 'src/quote.ts': quoteTs.replace("return 'B1'", `return '${t}'`) });

test.after(() => project.cleanup());

test('committed patches and rollbacks are journaled and replayed before serving', async () => {
  const app = await startPipelineApp(project.root, { journalDir });
  try {
    for (const patch of [
      { id: 'eur-1.2', files: { 'src/rates.ts': ratesTs.replace('1.1', '1.2') } },
      { id: 'tag-b2', files: withTag('B2') },
      { id: 'tag-b3', files: withTag('B3') },
    ]) {
      const r = await app.op('apply', { patch });
      assert.equal(r.ok, true, JSON.stringify(r.error));
    }
    assert.equal((await app.op('rollback', {})).ok, true);
    assert.deepEqual(await app.get('/tag'), { tag: 'B2' });
  } finally {
    await app.stop();
  }
  // Each line is a framed record: {len, sha256, record}.
  const lines = readFileSync(join(journalDir, 'journal.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).record);
  assert.deepEqual(
    lines.map((l) => l.kind),
    ['patch', 'patch', 'patch', 'rollback'],
  );
  assert.equal(lines[0].files[0].base, sha(ratesTs), 'records the base of each module');

  const again = await startPipelineApp(project.root, { journalDir });
  try {
    // The very first request already sees the replayed generation: requests were held.
    assert.deepEqual(await again.get('/quote?c=EUR&a=10'), { total: 12 });
    assert.deepEqual(await again.get('/tag'), { tag: 'B2' });
    assert.equal((await again.op('generation')).result, 5);
    assert.deepEqual((await again.op('drift')).result, []);
    const dup = await again.op('apply', { patch: { id: 'tag-b2', files: withTag('B2') } });
    assert.equal(dup.error?.code, 'LP_ERR_PATCH_DUPLICATE');
  } finally {
    await again.stop();
  }
});

test('after a redeploy, a journaled patch whose base changed is not applied and is reported as drift', async () => {
  const redeployed = ratesTs.replace('1.1', '1.4');
  project.write('src/rates.ts', redeployed);
  project.build();
  const tokens = createTokens(project.root);
  const app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_JOURNAL: journalDir } });
  try {
    assert.deepEqual(await app.get('/quote?c=EUR&a=10'), { total: 14 }, 'the redeployed rates stay');
    assert.deepEqual(await app.get('/tag'), { tag: 'B2' }, 'patches whose base still matches are replayed');
    const r = await runCli(['status', app.agent!, '--json'], { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.read } });
    assert.equal(r.code, 0, r.stderr);
    const status = JSON.parse(r.stdout) as StatusResult;
    assert.deepEqual(status.drift, [
      { module: 'src/rates.ts', patchId: 'eur-1.2', generation: 2, expectedHash: sha(ratesTs), actualHash: sha(redeployed) },
    ]);
    assert.equal(status.patching.enabled, true);
  } finally {
    await app.stop();
  }
});

test('a commit whose journal record cannot be written is undone and reported', async () => {
  const dir = join(project.root, '.journal-broken');
  const app = await startPipelineApp(project.root, { journalDir: dir });
  try {
    assert.equal((await app.op('apply', { patch: { id: 'ok-1', files: withTag('J1') } })).ok, true);
    // Make the journal file unwritable for this process: a directory in its place.
    rmSync(join(dir, 'journal.jsonl'));
    mkdirSync(join(dir, 'journal.jsonl'));
    const r = await app.op('apply', { patch: { id: 'lost-1', files: withTag('J2') } });
    assert.equal(r.ok, false);
    assert.equal(r.error!.code, 'LP_ERR_INTERNAL');
    assert.match(r.error!.message, /journal could not be written; the change was undone/);
    assert.deepEqual(await app.get('/tag'), { tag: 'J1' }, 'the unjournaled patch is not live');
    rmSync(join(dir, 'journal.jsonl'), { recursive: true });
    assert.equal((await app.op('apply', { patch: { id: 'lost-1', files: withTag('J2') } })).ok, true, 'the same id may be sent again');
  } finally {
    await app.stop();
  }
});
