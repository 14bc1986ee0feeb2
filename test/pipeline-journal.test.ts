/**
 * The patch journal file on its own: records append in order with increasing seq, survive a reopen,
 * a torn last line (crash mid-append) is reported and cut off before the next append, damaged lines
 * are reported rather than skipped silently, lines of the first (unframed) format are still read, and
 * the file is private to the owner.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
  assert.deepEqual(j.read(), { records: [], problems: [], tornBytes: 0 });
  const a = await j.append(patch(1));
  const b = await j.append({
    kind: 'rollback',
    time: new Date().toISOString(),
    who: 'tester',
    generation: 3,
    previousGeneration: 2,
    to: 1,
    toSeq: 0,
  });
  assert.equal(a.seq, 1);
  assert.equal(b.seq, 2);
  const again = new Journal(join(dir, 'j1'));
  const recs = again.read().records;
  assert.deepEqual(
    recs.map((r) => [r.seq, r.kind]),
    [
      [1, 'patch'],
      [2, 'rollback'],
    ],
  );
  assert.equal((await again.append(patch(3))).seq, 3, 'seq continues after a reopen');
  assert.equal(statSync(again.file).mode & 0o077, 0, 'journal is not readable by others');
});

test('a torn last line is reported, cut off before the next append, and the next record survives', async () => {
  const j = new Journal(join(dir, 'j2'));
  j.read();
  await j.append(patch(1));
  appendFileSync(j.file, '{"len":900,"sha256":"00","record":{"v":2,"seq":2,"kind":"patch","fil');
  const reopened = new Journal(join(dir, 'j2'));
  const first = reopened.read();
  assert.deepEqual(
    first.records.map((r) => r.seq),
    [1],
  );
  assert.equal(first.problems.length, 1);
  assert.match(first.problems[0]!.reason, /incomplete last line/);
  await reopened.append(patch(2));
  const text = readFileSync(j.file, 'utf8');
  assert.doesNotMatch(text, /"fil\{/, 'the fragment is gone');
  assert.equal(text.split('\n').filter(Boolean).length, 2);
  const after = new Journal(join(dir, 'j2')).read();
  assert.deepEqual(
    after.records.map((r) => [r.seq, (r as { patchId?: string }).patchId]),
    [
      [1, 'p1'],
      [2, 'p2'],
    ],
  );
  assert.deepEqual(after.problems, []);
});

test('a damaged line in the middle is reported with its line and offset; later records are still read', async () => {
  const j = new Journal(join(dir, 'j3'));
  j.read();
  await j.append(patch(1));
  await j.append(patch(2));
  await j.append(patch(3));
  const lines = readFileSync(j.file, 'utf8').split('\n');
  // Flip one character inside record 2's body: the length still matches, the checksum does not.
  lines[1] = lines[1]!.replace('export const n = 2', 'export const n = 7');
  writeFileSync(j.file, lines.join('\n'));
  const r = new Journal(join(dir, 'j3')).read();
  assert.deepEqual(
    r.records.map((x) => x.seq),
    [1, 3],
  );
  assert.equal(r.problems.length, 1);
  assert.equal(r.problems[0]!.line, 2);
  assert.equal(r.problems[0]!.offset, lines[0]!.length + 1);
  assert.equal(r.problems[0]!.reason, 'checksum mismatch');
});

test('the first format (bare v1 lines) is still read, including a record appended onto a torn fragment', async () => {
  const d = join(dir, 'j4');
  mkdirSync(d);
  const v1 = (n: number) => JSON.stringify({ v: 1, seq: n, ...patch(n) });
  // What the first format left after a failed write: a fragment, then the next record on the same line.
  writeFileSync(join(d, 'journal.jsonl'), `${v1(1)}\n{"v":1,"seq":2,"kind":"patch","fi${v1(2)}\n`);
  const j = new Journal(d);
  const r = j.read();
  assert.deepEqual(
    r.records.map((x) => [x.seq, (x as { patchId?: string }).patchId]),
    [
      [1, 'p1'],
      [2, 'p2'],
    ],
    'the record after the fragment is recovered',
  );
  assert.equal(r.problems.length, 1);
  assert.match(r.problems[0]!.reason, /torn fragment before record #2/);
  assert.equal((await j.append(patch(3))).seq, 3);
  assert.deepEqual(
    new Journal(d).read().records.map((x) => x.seq),
    [1, 2, 3],
    'old and new formats mix in one file',
  );
});
