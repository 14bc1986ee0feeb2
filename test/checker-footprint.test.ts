/**
 * The type checker's footprint on its host, measured as RSS from /proc (Linux): the checker is a
 * separate process that exists only while checks happen, the host's RSS goes back to within 15 MB of
 * its at-rest figure once the configurable idle time has passed, and the checker's heap cap holds
 * (a check that outgrows it fails with a clear message and the host keeps serving). The pipeline and
 * the REPL share that one checker process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { RemoteRepl } from '../client/repl/session';
import { createProject, createTokens, startApp, type AppProcess } from './helpers/project';
import { startPipelineApp, type PipelineApp } from './helpers/pipeline-app';

const linux = existsSync('/proc/self/status');
const MB = 1024 * 1024;

/** Resident set size of `pid` in bytes. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Direct children of `pid` (every thread's list). */
function children(pid: number): number[] {
  const out: number[] = [];
  for (const tid of require('node:fs').readdirSync(`/proc/${pid}/task`) as string[]) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // The thread ended while we looked.
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function settledRss(pid: number): Promise<number> {
  // The lowest of a few samples: RSS moves with the allocator, the figure that matters is the floor.
  let low = Infinity;
  for (let i = 0; i < 5; i++) {
    low = Math.min(low, rss(pid));
    await sleep(200);
  }
  return low;
}

test(
  'host RSS returns to within 15 MB of at rest after the idle time; the checker is a process that goes away',
  { skip: !linux && 'needs /proc' },
  async () => {
    const project = createProject('pipeline');
    const quoteTs = readFileSync(join(project.root, 'src', 'quote.ts'), 'utf8');
    let app: PipelineApp | undefined;
    try {
      app = await startPipelineApp(project.root, { checker: { idleMs: 3000 } });
      const pid = app.child.pid!;
      await app.op('ready');
      for (let i = 0; i < 20; i++) await app.get('/quote?c=EUR&a=10');
      const atRest = await settledRss(pid);
      assert.deepEqual(children(pid), [], 'no checker before the first check');

      const r = await app.op('apply', {
        patch: { files: { 'src/quote.ts': quoteTs.replace('amount * rate(currency) * 100', 'amount * rate(currency) * 100 + 0') } },
      });
      assert.equal(r.ok, true, JSON.stringify(r.error));
      const kids = children(pid);
      assert.equal(kids.length, 1, 'the checker runs as one child process');
      const checkerRss = rss(kids[0]!);
      const hostAfter = rss(pid);
      // The program lives in the checker, not in the host.
      assert.ok(checkerRss > 40 * MB, `checker RSS ${(checkerRss / MB).toFixed(0)} MB holds the program`);
      assert.ok(hostAfter - atRest < 40 * MB, `host grew ${((hostAfter - atRest) / MB).toFixed(1)} MB during the check`);

      // After the idle time the checker exits and the host is back near its resting figure.
      const deadline = Date.now() + 3000 + 10_000;
      while (children(pid).length > 0 && Date.now() < deadline) await sleep(200);
      assert.deepEqual(children(pid), [], 'the checker stopped after the idle time');
      const after = await settledRss(pid);
      assert.ok(after - atRest <= 15 * MB, `host RSS ${(after / MB).toFixed(1)} MB vs ${(atRest / MB).toFixed(1)} MB at rest`);
      assert.deepEqual(await app.get('/quote?c=EUR&a=10'), { total: 11 });

      // The next check starts a new checker, and it still works.
      const again = await app.op('check', { patch: { files: { 'src/quote.ts': quoteTs } } });
      assert.equal(again.ok, true, JSON.stringify(again.error));
      assert.equal(again.result.ok, true);
    } finally {
      await app?.stop();
      project.cleanup();
    }
  },
);

test('the checker heap cap holds: a check past it fails with a clear message and the host keeps serving', async () => {
  const project = createProject('pipeline');
  const quoteTs = readFileSync(join(project.root, 'src', 'quote.ts'), 'utf8');
  let app: PipelineApp | undefined;
  try {
    app = await startPipelineApp(project.root, { checker: { maxMb: 8 } });
    await app.op('ready');
    const r = await app.op('check', { patch: { files: { 'src/quote.ts': quoteTs } } });
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, 'LP_ERR_INTERNAL');
    assert.match(r.error!.message, /out of memory \(limit 8 MB: raise LIVEPATCH_CHECKER_MAX_MB\)/);
    assert.equal(app.child.exitCode, null, 'the host is alive');
    assert.deepEqual(await app.get('/quote?c=EUR&a=10'), { total: 11 });
  } finally {
    await app?.stop();
    project.cleanup();
  }
});

test('the pipeline and the REPL share one type-check process, which sees patched sources', { skip: !linux && 'needs /proc' }, async () => {
  const project = createProject();
  const tokens = createTokens(project.root);
  const ratesTs = readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8');
  let app: AppProcess | undefined;
  let client: AgentClient | undefined;
  try {
    app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file } });
    const pid = app.child.pid!;
    client = await AgentClient.connect(app.agent!, { token: tokens.admin, timeoutMs: 60_000 });
    const repl = new RemoteRepl(client);
    await repl.open();
    assert.equal((await repl.eval("mod('src/rates.ts').rate('EUR')")).output, '1.1');
    assert.equal(children(pid).length, 1, 'the REPL started the checker');
    const checker = children(pid)[0];

    // A patch adds a parameter: the pipeline checks it in the same process.
    const patched = ratesTs.replace(
      "export function rate(currency: string): number {\n  return currency === 'EUR' ? 1.1 : 1;",
      "export function rate(currency: string, boost = 0): number {\n  return (currency === 'EUR' ? 1.1 : 1) + boost;",
    );
    assert.notEqual(patched, ratesTs);
    await client.request('apply', { patch: { files: { 'src/rates.ts': patched } } });
    assert.deepEqual(children(pid), [checker], 'the pipeline used the same checker process');

    // The REPL's next check sees the patched signature (the overlay), and a wrong call is still refused.
    assert.equal((await repl.eval("mod('src/rates.ts').rate('EUR', 1)")).output, '2.1');
    await assert.rejects(
      repl.eval("mod('src/rates.ts').rate('EUR', 'x')"),
      (e: Error & { code?: string }) => e.code === 'LP_ERR_EVAL_TYPE',
    );
    assert.deepEqual(children(pid), [checker], 'still one checker process');
  } finally {
    client?.close();
    await app?.stop();
    project.cleanup();
  }
});

test(
  'the checker persists its incremental state: after the idle exit and after a restart, only changed files are checked',
  { skip: !linux && 'needs /proc' },
  async () => {
    const project = createProject('pipeline');
    const quoteTs = readFileSync(join(project.root, 'src', 'quote.ts'), 'utf8');
    const stateDir = join(project.root, 'checker-state');
    const body = (n: number) => ({ patch: { files: { 'src/quote.ts': quoteTs.replace("return 'B1';", `return 'B${n}';`) } } });
    let app: PipelineApp | undefined;
    try {
      app = await startPipelineApp(project.root, { checker: { idleMs: 1000, stateDir } });
      const first = await app.op('check', body(2));
      assert.equal(first.ok, true, JSON.stringify(first.error));
      const all = first.result.checkedFiles as number;
      assert.ok(all >= 4, `the first check builds the whole program (${all} files)`);
      // The checker answers first and writes its state right after: wait for the file.
      const stateFiles = (): string[] =>
        (existsSync(stateDir) ? (readdirSync(stateDir) as string[]) : []).filter((f) => /^checker-[0-9a-f]{12}\.tsbuildinfo$/.test(f));
      for (const until = Date.now() + 10_000; stateFiles().length === 0 && Date.now() < until;) await sleep(50);
      assert.equal(stateFiles().length, 1, `state written: ${stateFiles().join(', ')}`);

      const pid = app.child.pid!;
      const deadline = Date.now() + 15_000;
      while (children(pid).length > 0 && Date.now() < deadline) await sleep(100);
      assert.deepEqual(children(pid), [], 'the checker exited for idleness');
      const afterIdle = await app.op('check', body(3));
      assert.equal(afterIdle.result.ok, true);
      assert.ok(afterIdle.result.checkedFiles < all, `after idle: ${afterIdle.result.checkedFiles} of ${all} files checked`);

      await app.stop();
      app = await startPipelineApp(project.root, { checker: { idleMs: 1000, stateDir } });
      const afterRestart = await app.op('check', body(4));
      assert.equal(afterRestart.result.ok, true);
      assert.ok(afterRestart.result.checkedFiles < all, `after restart: ${afterRestart.result.checkedFiles} of ${all} files checked`);
      // The reused state still finds a type error the change causes elsewhere.
      const bad = await app.op('check', {
        patch: {
          files: {
            'src/rates.ts':
              "export const RATES_LABEL = 'x';\nexport function rate(currency: number): number { return currency; }\nexport function tag(): string { return 'A'; }\n",
          },
        },
      });
      assert.equal(bad.result.ok, false);
      assert.ok(
        bad.result.diagnostics.some((d: { file?: string }) => d.file === 'src/quote.ts'),
        JSON.stringify(bad.result.diagnostics),
      );
    } finally {
      await app?.stop();
      project.cleanup();
    }
  },
);

/** Persisted checker state files under `root` (its state folder is `.livepatch` or the journal's). */
function stateFiles(root: string): string[] {
  const out: string[] = [];
  for (const dir of [root, ...readdirSync(root).map((d) => join(root, d))]) {
    try {
      out.push(...readdirSync(dir).filter((f) => /^checker-.*\.tsbuildinfo$/.test(f)));
    } catch {
      // Not a folder.
    }
  }
  return out;
}

test(
  'LIVEPATCH_CHECKER_WARMUP=1 starts the checker after start without a patch, persists its state, and it still stops when idle',
  { skip: !linux && 'needs /proc' },
  async () => {
    const project = createProject();
    const tokens = createTokens(project.root);
    let app: AppProcess | undefined;
    try {
      app = await startApp(project.root, {
        env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_CHECKER_WARMUP: '1', LIVEPATCH_CHECKER_IDLE_MS: '2000' },
      });
      const pid = app.child.pid!;
      let deadline = Date.now() + 30_000;
      while (stateFiles(project.root).length === 0 && Date.now() < deadline) await sleep(100);
      assert.equal(stateFiles(project.root).length, 1, 'the warm-up check wrote the checker state, with no patch sent');
      deadline = Date.now() + 2000 + 15_000;
      while (children(pid).length > 0 && Date.now() < deadline) await sleep(200);
      assert.deepEqual(children(pid), [], 'the warmed checker stopped after its idle time');
    } finally {
      await app?.stop();
      project.cleanup();
    }
  },
);

test('without LIVEPATCH_CHECKER_WARMUP no checker starts until a check is asked for', { skip: !linux && 'needs /proc' }, async () => {
  const project = createProject();
  const tokens = createTokens(project.root);
  let app: AppProcess | undefined;
  try {
    app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file } });
    await sleep(3000);
    assert.deepEqual(children(app.child.pid!), []);
    assert.deepEqual(stateFiles(project.root), []);
  } finally {
    await app?.stop();
    project.cleanup();
  }
});
