/**
 * The patch journal file on its own: records append in order with increasing seq, survive a reopen,
 * a torn last line (crash mid-append) is ignored and the next record still lands on its own line,
 * and the file is private to the owner.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Journal } from '../server/pipeline/journal';

const dir = mkdtempSync(join(tmpdir(), 'lp-journal-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const patch = (n: number) => ({
  kind: 'patch' as const,
  time: new Date().toISOString(),
  who: 'tester',
  patchId: `p${n}`,
  generation: n + 1,
  previousGeneration: n,
  files: [{ module: 'src/a.ts', source: `export const n = ${n};`, js: `exports.n = ${n};`, hash: 'h'.repeat(64), base: null }],
});

test('records append with increasing seq and are read back after a reopen', async () => {
  const j = new Journal(join(dir, 'j1'));
  assert.deepEqual(j.read(), []);
  const a = await j.append(patch(1));
  const b = await j.append({ kind: 'rollback', time: new Date().toISOString(), who: 'tester', generation: 3, previousGeneration: 2, to: 1, toSeq: 0 });
  assert.equal(a.seq, 1);
  assert.equal(b.seq, 2);
  const again = new Journal(join(dir, 'j1'));
  const recs = again.read();
  assert.deepEqual(recs.map((r) => [r.seq, r.kind]), [[1, 'patch'], [2, 'rollback']]);
  assert.equal((await again.append(patch(3))).seq, 3, 'seq continues after a reopen');
  assert.equal(statSync(again.file).mode & 0o077, 0, 'journal is not readable by others');
});

test('a torn last line is ignored and the next record starts on a fresh line', async () => {
  const j = new Journal(join(dir, 'j2'));
  j.read();
  await j.append(patch(1));
  appendFileSync(j.file, '{"v":1,"seq":2,"kind":"patch","fil');
  const reopened = new Journal(join(dir, 'j2'));
  assert.deepEqual(reopened.read().map((r) => r.seq), [1]);
  await reopened.append(patch(2));
  const lines = readFileSync(j.file, 'utf8').split('\n').filter(Boolean);
  assert.equal(lines.length, 3);
  assert.deepEqual(new Journal(join(dir, 'j2')).read().map((r) => [r.seq, (r as { patchId?: string }).patchId]), [[1, 'p1'], [2, 'p2']]);
});
