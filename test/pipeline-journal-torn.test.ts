/**
 * A full disk must not cost a committed patch. The journal lives on a real, tiny tmpfs: an apply
 * whose record does not fit fails (nothing committed), and once space is back the next apply is
 * committed and survives a restart — its record must not be glued to the fragment the failed write
 * left. Also: a damaged journal line is reported (stderr, `status`, audit log), not skipped silently.
 * Everything goes through the real CLI against a real app. The tmpfs part needs root (mount).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StatusResult } from '../shared/ops';
import { createProject, createTokens, runCli, startApp, type AppProcess } from './helpers/project';

const project = createProject('pipeline');
const tokens = createTokens(project.root);
const quoteTs = readFileSync(join(project.root, 'src', 'quote.ts'), 'utf8');
const withTag = (t: string, pad = 0) => ({
  'src/quote.ts': quoteTs.replace("return 'B1'", `return '${t}'`) + (pad ? `// ${'x'.repeat(pad)}\n` : ''),
});
const running = new Set<AppProcess>();
test.after(async () => {
  for (const a of running) await a.stop();
  project.cleanup();
});

function tryMountTmpfs(dir: string, size: string): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function start(journalDir: string, audit: string): Promise<AppProcess> {
  return startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_JOURNAL: journalDir, LIVEPATCH_AUDIT: audit } }).then(
    (a) => {
      running.add(a);
      return a;
    },
  );
}

async function stop(a: AppProcess): Promise<void> {
  await a.stop();
  running.delete(a);
}

let n = 0;
/** `livepatch apply HOST FILE.json --json` with a patch set file; resolves with exit code and parsed output. */
async function apply(app: AppProcess, set: { id: string; files: Record<string, string> }) {
  const file = join(project.root, `patch-${++n}.json`);
  writeFileSync(file, JSON.stringify(set));
  const r = await runCli(['apply', app.agent!, file, '--json'], { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.patch } });
  return { code: r.code, out: JSON.parse(r.stdout), stderr: r.stderr };
}

async function status(app: AppProcess): Promise<StatusResult> {
  const r = await runCli(['status', app.agent!, '--json'], { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.read } });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as StatusResult;
}

/** Fill the filesystem holding `dir` with one file until it refuses more. */
function fill(dir: string): string {
  const file = join(dir, 'filler');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(4096, 0x61);
  try {
    for (;;) writeSync(fd, block);
  } catch (e) {
    assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
  } finally {
    closeSync(fd);
  }
  return file;
}

const mountDir = mkdtempSync(join(tmpdir(), 'lp-journal-tmpfs-'));
const mounted = tryMountTmpfs(mountDir, '96k');
test.after(async () => {
  // The apps' type-check processes exit just after their hosts and may still hold files on the mount.
  for (let i = 0; mounted; i++) {
    try {
      execFileSync('umount', [mountDir], { stdio: 'ignore' });
      break;
    } catch (e) {
      if (i >= 50) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  rmSync(mountDir, { recursive: true, force: true });
});

test(
  'disk full: the apply is refused; after space returns the next apply is committed and survives a restart',
  { skip: mounted ? false : 'needs root to mount a tmpfs' },
  async () => {
    const audit = join(project.root, 'audit-torn.jsonl');
    const app = await start(mountDir, audit);
    const first = await apply(app, { id: 'before-full', files: withTag('T1') });
    assert.equal(first.code, 0, first.stderr);

    const filler = fill(mountDir);
    // Larger than what is left in the journal's last page: the write starts, then hits ENOSPC.
    const full = await apply(app, { id: 'while-full', files: withTag('T2', 12_000) });
    assert.equal(full.code, 1, 'refused');
    assert.equal(full.out.error.code, 'LP_ERR_INTERNAL');
    assert.match(full.out.error.message, /journal could not be written; the change was undone/);
    assert.deepEqual(await app.get('/tag'), { tag: 'T1' }, 'nothing of the refused patch is live');
    assert.ok(readFileSync(join(mountDir, 'journal.jsonl'), 'utf8').endsWith('\n'), 'no fragment of the failed write is left behind');

    rmSync(filler);
    const after = await apply(app, { id: 'after-full', files: withTag('T3') });
    assert.equal(after.code, 0, after.stderr);
    assert.deepEqual(await app.get('/tag'), { tag: 'T3' });
    await stop(app);

    const again = await start(mountDir, audit);
    assert.deepEqual(await again.get('/tag'), { tag: 'T3' }, 'the patch committed after the failed write is replayed');
    const s = await status(again);
    assert.deepEqual(s.journal?.unreadable, []);
    assert.deepEqual(s.quarantined, []);
    const h = await runCli(['history', again.agent!, '--json'], { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.read } });
    assert.deepEqual((JSON.parse(h.stdout) as { patchId?: string }[]).map((g) => g.patchId).filter(Boolean), ['before-full', 'after-full']);
    const dup = await apply(again, { id: 'while-full', files: withTag('T2') });
    assert.equal(dup.code, 0, 'the refused id was never committed, so it may be sent again');
    await stop(again);
  },
);

test('a damaged journal line is reported on stderr, in status and in the audit log, and the records after it are replayed', async () => {
  const journalDir = join(project.root, '.journal-damaged');
  const audit = join(project.root, 'audit-damaged.jsonl');
  const app = await start(journalDir, audit);
  const ratesTs = readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8');
  assert.equal((await apply(app, { id: 'd1', files: withTag('D1') })).code, 0);
  assert.equal((await apply(app, { id: 'd2', files: { 'src/rates.ts': ratesTs.replace('1.1', '1.2') } })).code, 0);
  assert.equal((await apply(app, { id: 'd3', files: withTag('D3') })).code, 0);
  await stop(app);
  const file = join(journalDir, 'journal.jsonl');
  const lines = readFileSync(file, 'utf8').split('\n');
  lines[1] = lines[1]!.replace('1.2', '1.9'); // same length, wrong checksum
  writeFileSync(file, lines.join('\n'));
  rmSync(join(journalDir, 'probation.json'), { force: true });

  const again = await start(journalDir, audit);
  assert.deepEqual(await again.get('/tag'), { tag: 'D3' }, 'records after the damaged line are replayed');
  assert.deepEqual(await again.get('/quote?c=EUR&a=10'), { total: 11 }, 'the damaged record is not');
  assert.match(again.stderr(), /journal .*journal\.jsonl: line 2 \(offset \d+, \d+ bytes\) not replayed: checksum mismatch/);
  const s = await status(again);
  assert.equal(s.journal?.unreadable.length, 1);
  assert.deepEqual(
    { line: s.journal!.unreadable[0]!.line, reason: s.journal!.unreadable[0]!.reason },
    { line: 2, reason: 'checksum mismatch' },
  );
  const human = await runCli(['status', again.agent!], { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.read } });
  assert.match(human.stdout, /journal .*1 unreadable line/);
  const records = readFileSync(audit, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const rec = records.find((r) => r.op === 'journal-replay' && r.outcome === 'LP_ERR_JOURNAL_UNREADABLE');
  assert.ok(rec, 'audited');
  assert.match(rec.detail, /line 2 .*checksum mismatch/);
  await stop(again);
});
