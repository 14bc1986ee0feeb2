/**
 * Crash-loop protection through the real CLI and a real app with a journal: a committed patch whose
 * timer throws kills the host; the next start does not re-apply it (quarantine), comes up at the
 * last generation that survived, serves, and reports the patch in status, history, the quarantine
 * list and the audit log. The patch can be re-applied (and is caught again) or dropped for good. A
 * host killed without a trace is given one more chance before its newest patch is quarantined, and
 * LIVEPATCH_REPLAY=off starts with nothing replayed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { QuarantinedPatch, QuarantineResult, StatusResult } from '../shared/ops';
import { createProject, createTokens, runCli, startApp, type AppProcess } from './helpers/project';

const project = createProject('pipeline');
const tokens = createTokens(project.root);
const quoteTs = readFileSync(join(project.root, 'src', 'quote.ts'), 'utf8');
const withTag = (t: string, extra = '') => ({ 'src/quote.ts': quoteTs.replace("return 'B1'", `return '${t}'`) + extra });
// Thrown from a timer that the patched function arms when a request calls it, well after the commit
// has been journaled and reported (a top-level timer would be refused at stage: LP_ERR_PATCH_EFFECT).
const withBoom = () => ({
  'src/quote.ts': quoteTs.replace("return 'B1'", "setTimeout(() => {\n    throw new Error('patch boom');\n  }, 1500);\n  return 'BOOM'"),
});
const running = new Set<AppProcess>();
test.after(async () => {
  for (const a of running) await a.stop();
  project.cleanup();
});

async function start(journalDir: string, audit: string, env: Record<string, string> = {}): Promise<AppProcess> {
  const a = await startApp(project.root, {
    env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_JOURNAL: journalDir, LIVEPATCH_AUDIT: audit, ...env },
  });
  running.add(a);
  // startApp rejects its (settled) promise when the child exits; exits are expected here.
  a.child.on('exit', () => running.delete(a));
  return a;
}

function exited(a: AppProcess, timeoutMs = 20_000): Promise<number | null> {
  if (a.child.exitCode !== null || a.child.signalCode !== null) return Promise.resolve(a.child.exitCode);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`host did not exit\nstderr:\n${a.stderr()}`)), timeoutMs);
    a.child.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

const cli = (args: string[], token: string) => runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: token } });
let n = 0;
async function apply(app: AppProcess, set: { id: string; files: Record<string, string> }) {
  const file = join(project.root, `patch-${++n}.json`);
  writeFileSync(file, JSON.stringify(set));
  return cli(['apply', app.agent!, file, '--json'], tokens.patch);
}

async function status(app: AppProcess): Promise<StatusResult> {
  const r = await cli(['status', app.agent!, '--json'], tokens.read);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as StatusResult;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const auditRecords = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

test('a patch whose timer throws kills the host once: the restart quarantines it, serves the previous generation, and it can be re-applied or dropped', async () => {
  const journalDir = join(project.root, '.journal-boom');
  const audit = join(project.root, 'audit-boom.jsonl');
  const app = await start(journalDir, audit);
  assert.equal((await apply(app, { id: 'good-1', files: withTag('G1') })).code, 0);
  const boom = await apply(app, { id: 'boom', files: withBoom() });
  assert.equal(boom.code, 0, boom.stderr);
  assert.deepEqual(await app.get('/tag'), { tag: 'BOOM' }, 'a request runs the patched code, which arms the timer');
  assert.equal(await exited(app), 1, 'the timer kills the host');

  const again = await start(journalDir, audit);
  await sleep(2500); // longer than the timer: a replayed patch would have killed the host by now
  assert.equal(again.child.exitCode, null, `the host is still up\n${again.stderr()}`);
  assert.deepEqual(await again.get('/tag'), { tag: 'G1' }, 'serves the last generation that survived');
  assert.match(again.stderr(), /patch boom quarantined, not re-applied: the host exited with code 1 .*patch boom/);

  const s = await status(again);
  assert.equal(s.currentGeneration, 2, 'deploy + good-1');
  assert.equal(s.quarantined?.length, 1);
  const q = s.quarantined![0]!;
  assert.deepEqual([q.patchId, q.who, q.modules], ['boom', 'patcher', ['src/quote.ts']]);
  assert.match(q.reason, /exited with code 1 .*Error: patch boom/);
  assert.match((await cli(['status', again.agent!], tokens.read)).stdout, /quarantined\s+1 patch\(es\) not re-applied/);
  const hist = await cli(['history', again.agent!], tokens.read);
  assert.match(hist.stdout, /QUARANTINED[\s\S]*\nboom\s.*src\/quote\.ts\s+the host exited with code 1/);
  const list = await cli(['quarantine', again.agent!, '--json'], tokens.read);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(
    (JSON.parse(list.stdout) as QuarantinedPatch[]).map((p) => p.patchId),
    ['boom'],
  );
  const rec = auditRecords(audit).find((r) => r.op === 'quarantine' && r.outcome === 'LP_ERR_PATCH_QUARANTINED');
  assert.equal(rec?.patchId, 'boom', 'the quarantine is in the audit log');

  // The id is not free for an ordinary apply while quarantined; a read token may not change the list.
  const plain = await apply(again, { id: 'boom', files: withBoom() });
  assert.equal(plain.code, 1);
  assert.equal(JSON.parse(plain.stdout).error.code, 'LP_ERR_PATCH_QUARANTINED');
  assert.equal((await cli(['quarantine', again.agent!, '--drop', 'boom'], tokens.read)).code, 3);
  assert.equal((await cli(['quarantine', again.agent!, '--drop', 'nope', '--json'], tokens.patch)).code, 1);

  // Re-apply: committed again, on probation again, so its next crash is caught again.
  const re = await cli(['quarantine', again.agent!, '--reapply', 'boom', '--json'], tokens.patch);
  assert.equal(re.code, 0, re.stderr);
  const reResult = JSON.parse(re.stdout) as QuarantineResult;
  assert.equal(reResult.action, 'reapplied');
  assert.equal(reResult.commit?.generation, 3);
  assert.deepEqual(reResult.quarantined, []);
  assert.deepEqual(await again.get('/tag'), { tag: 'BOOM' });
  assert.equal(await exited(again), 1);

  const third = await start(journalDir, audit);
  await sleep(2500);
  assert.equal(third.child.exitCode, null, `the host is still up\n${third.stderr()}`);
  assert.deepEqual(await third.get('/tag'), { tag: 'G1' });
  assert.deepEqual(
    (await status(third)).quarantined?.map((p) => p.patchId),
    ['boom'],
  );

  const drop = await cli(['quarantine', third.agent!, '--drop', 'boom'], tokens.patch);
  assert.equal(drop.code, 0, drop.stderr);
  assert.match(drop.stdout, /dropped boom/);
  assert.deepEqual((await status(third)).quarantined, []);
  assert.ok(
    auditRecords(audit).some(
      (r) => r.op === 'quarantine' && r.outcome === 'ok' && r.patchId === 'boom' && /dropped/.test(String(r.detail)),
    ),
  );
  await third.stop();

  const fourth = await start(journalDir, audit);
  await sleep(2000);
  assert.equal(fourth.child.exitCode, null);
  assert.deepEqual(await fourth.get('/tag'), { tag: 'G1' }, 'a dropped patch is never replayed');
  assert.deepEqual((await status(fourth)).quarantined, []);
  await fourth.stop();
});

test('a host killed without a trace right after a patch gets one more start; a second such death quarantines the patch', async () => {
  const journalDir = join(project.root, '.journal-kill');
  const audit = join(project.root, 'audit-kill.jsonl');
  const app = await start(journalDir, audit);
  assert.equal((await apply(app, { id: 'k1', files: withTag('K1') })).code, 0);
  app.child.kill('SIGKILL');
  await exited(app);

  const second = await start(journalDir, audit);
  assert.deepEqual(await second.get('/tag'), { tag: 'K1' }, 'one death without a trace: still replayed');
  // The warning comes over the child's stderr pipe, which may be read after the response above.
  const warning = /ended without exiting .* re-applied, and quarantined if this happens again/;
  for (let i = 0; i < 200 && !warning.test(second.stderr()); i++) await sleep(10);
  assert.match(second.stderr(), warning);
  second.child.kill('SIGKILL');
  await exited(second);

  const third = await start(journalDir, audit);
  assert.deepEqual(await third.get('/tag'), { tag: 'B1' });
  const q = (await status(third)).quarantined ?? [];
  assert.deepEqual(
    q.map((p) => p.patchId),
    ['k1'],
  );
  assert.match(q[0]!.reason, /twice within 60 s/);
  await third.stop();
});

test('LIVEPATCH_REPLAY=off starts with no journaled patch applied, and says so', async () => {
  const journalDir = join(project.root, '.journal-off');
  const audit = join(project.root, 'audit-off.jsonl');
  const app = await start(journalDir, audit, { LIVEPATCH_CRASH_WINDOW_MS: '0' });
  assert.equal((await apply(app, { id: 'off-1', files: withTag('O1') })).code, 0);
  await app.stop();

  const off = await start(journalDir, audit, { LIVEPATCH_REPLAY: 'off' });
  assert.deepEqual(await off.get('/tag'), { tag: 'B1' });
  const s = await status(off);
  assert.equal(s.currentGeneration, 1);
  assert.equal(s.journal?.replay, false);
  assert.match((await cli(['status', off.agent!], tokens.read)).stdout, /NOT replayed \(LIVEPATCH_REPLAY=off\)/);
  assert.match(off.stderr(), /journal replay is off \(LIVEPATCH_REPLAY=off\)/);
  // New patches are journaled after the old ones; a normal start replays them all.
  assert.equal(
    (
      await apply(off, {
        id: 'off-2',
        files: { 'src/rates.ts': readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8').replace('1.1', '1.3') },
      })
    ).code,
    0,
  );
  await off.stop();

  const on = await start(journalDir, audit);
  assert.deepEqual(await on.get('/tag'), { tag: 'O1' });
  assert.deepEqual(await on.get('/quote?c=EUR&a=10'), { total: 13 });
  await on.stop();
});
