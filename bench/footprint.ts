/**
 * Benchmark — host footprint: resident memory (RSS from /proc, not heap) of the example shop and of a
 * generated 300-module project, plain (`node dist/main.js`) and with livepatch (`-r livepatch/register`
 * plus the pipeline, driven over IPC as in bench/apply.ts; no socket), side by side:
 *   - at rest (after some requests, lowest of a few samples),
 *   - peak during the first patch check+apply: the host's, and the type checker's (a child process,
 *     with the native compiler's process under it when that checks: the sum of each one's peak),
 *   - after the checker's idle time (default here 5 s; 30 s in production), when the checker has exited.
 * Linux only (/proc). Usage: npm run build && node dist/bench/footprint.js
 * (env BENCH_SIZES=300, BENCH_CHECKER_IDLE_MS=5000, BENCH_ENGINE=auto|native|typescript)
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { copyShop, samplePatch } from '../examples/bench-kit';
import { startPipelineApp } from '../test/helpers/pipeline-app';
import { nativeCompilerProcesses } from '../test/helpers/project';
import { launch } from '../testkit/launch';
import { ENGINE, generate, moduleSource } from './apply';

const MB = 1024 * 1024;
const CHECKER_IDLE_MS = Number(process.env['BENCH_CHECKER_IDLE_MS'] ?? 5000);
const SIZES = (process.env['BENCH_SIZES'] ?? '300').split(',').filter(Boolean).map(Number);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function status(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

function children(pid: number): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // The thread ended.
    }
  }
  return out;
}

/** Every process under `pid` (the checker, and the native compiler's process under it). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const c of children(pid)) out.push(c, ...descendants(c));
  return out;
}

async function atRest(pid: number, get: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 50; i++) await get();
  await sleep(1000);
  let low = Infinity;
  for (let i = 0; i < 5; i++) {
    low = Math.min(low, status(pid, 'VmRSS'));
    await sleep(200);
  }
  return low;
}

/** Plain run: the app without livepatch. */
async function plain(root: string, path: string): Promise<number> {
  await using app = await launch({
    args: ['dist/main.js'],
    cwd: root,
    env: { PORT: '0' },
    name: 'plain app',
    ready: [{ stream: 'stdout', pattern: /app listening on (\d+)/ }],
  });
  const port = Number(app.ready[0]![1]);
  return await atRest(app.pid, () => fetch(`http://127.0.0.1:${port}${path}`).then((r) => r.text()));
}

interface Row {
  name: string;
  plain: number;
  rest: number;
  hostPeak: number;
  checkerPeak: number;
  afterIdle: number;
  checkerGone: boolean;
}

/** The sum of the peaks of every process under `pid` (an upper bound of their peak together). */
function treePeak(pid: number): number {
  return descendants(pid).reduce((sum, c) => sum + (status(c, 'VmHWM') || 0), 0);
}

async function withAgent(name: string, root: string, path: string, patch: Record<string, string>): Promise<Row> {
  const app = await startPipelineApp(root, { checker: { idleMs: CHECKER_IDLE_MS, engine: ENGINE } }, 60_000);
  try {
    const pid = app.child.pid!;
    await app.op('ready');
    const rest = await atRest(pid, () => app.get(path).catch(() => undefined));
    let hostPeak = 0;
    let checkerPeak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        hostPeak = Math.max(hostPeak, status(pid, 'VmRSS') || 0);
        checkerPeak = Math.max(checkerPeak, treePeak(pid));
        await sleep(25);
      }
    })();
    const r = await app.op('apply', { patch: { files: patch } });
    checkerPeak = Math.max(checkerPeak, treePeak(pid));
    sampling = false;
    await sampler;
    if (!r.ok) throw new Error(`${name}: apply failed: ${JSON.stringify(r.error)}`);
    await sleep(CHECKER_IDLE_MS + 2000);
    const checkerGone = children(pid).length === 0 && nativeCompilerProcesses(root).length === 0;
    let low = Infinity;
    for (let i = 0; i < 5; i++) {
      low = Math.min(low, status(pid, 'VmRSS'));
      await sleep(200);
    }
    return { name, plain: 0, rest, hostPeak, checkerPeak, afterIdle: low, checkerGone };
  } finally {
    await app.stop();
  }
}

const f = (b: number) => (b / MB).toFixed(0).padStart(6);

async function main(): Promise<void> {
  if (!readdirSync('/proc').length) throw new Error('needs Linux /proc');
  console.log(`footprint benchmark: node ${process.version}; RSS in MB; checker idle time ${CHECKER_IDLE_MS} ms; engine ${ENGINE}`);
  console.log('project      |  plain | agent at rest | host peak in check | checker peak | host after idle (Δ vs rest) | checker gone');
  const rows: Row[] = [];
  const shop = copyShop();
  try {
    const p = await plain(shop.root, '/quote?items=mug:12');
    rows.push({ ...(await withAgent('shop', shop.root, '/quote?items=mug:12', samplePatch().patched)), plain: p });
  } finally {
    shop.cleanup();
  }
  for (const n of SIZES) {
    const root = generate(n);
    try {
      const p = await plain(root, '/1');
      const mid = Math.floor(n / 2);
      rows.push({ ...(await withAgent(`${n} modules`, root, '/1', { [`src/m${mid}.ts`]: moduleSource(mid, 2) })), plain: p });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
  for (const r of rows) {
    const d = (r.afterIdle - r.rest) / MB;
    console.log(
      `${r.name.padEnd(12)} | ${f(r.plain)} | ${f(r.rest).padStart(13)} | ${f(r.hostPeak).padStart(18)} | ${f(r.checkerPeak).padStart(12)} | ${f(r.afterIdle).padStart(19)} (${d >= 0 ? '+' : ''}${d.toFixed(1)}) | ${r.checkerGone ? 'yes' : 'NO'}`,
    );
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
