/**
 * Benchmark — instructions per request: what the engine and the agent add to each request of the
 * example shop, counted in executed user-space instructions (valgrind's cachegrind) instead of time.
 *
 * Time per request swings by ±50 % within seconds on a shared VM, far more than the 1–2 µs being
 * measured (see BENCHMARKS.md § Overhead); an instruction count does not. Each side is started under
 * `valgrind --tool=cachegrind` twice, served N1 and then N2 requests (autocannon, 2 connections) and
 * stopped; instructions per request = (count at N2 − count at N1) ÷ (N2 − N1), so start-up, the patch
 * and JIT warm-up (done within the first N1 requests) cancel out. Kernel work (the sockets) is not
 * counted, so the ratios here are stricter than CPU-time ratios: the same kernel time is added to
 * every side's denominator in reality. Counts compare well between builds of the same code (engine
 * only, this build vs BENCH_BASELINE); across different code they are not a CPU-time proxy (V8 compiles
 * instrumented modules differently), and the agent sides do not repeat: the agent's timers and sockets
 * run by wall-clock time, which valgrind slows about 50× (BENCHMARKS.md § Overhead).
 *
 * Sides: plain node (the shop with a no-op stand-in for `livepatch`), the engine only
 * (`-r livepatch/register`, no tokens), the agent, the agent after one patch; with
 * BENCH_BASELINE=DIR (another built livepatch checkout) also that checkout's engine and agent.
 * With BENCH_CACHE_SIM=1, cachegrind also simulates the caches and branch predictor of this machine,
 * and each side's line adds, per request: first-level cache misses (instruction and data), last-level
 * misses, mispredicted branches, and a cycle estimate that weighs them (Ir + 10 × first-level misses +
 * 10 × mispredicts + 100 × last-level misses). Different code can then be compared on more than its
 * instruction count: code size and data layout show up as misses. The weights are a coarse model of a
 * current x86 core, not a measurement; the counts themselves repeat like the instruction counts.
 *
 * Usage: node dist/bench/instructions.js   (env BENCH_PATH=/health, BENCH_N=3000,9000, BENCH_REPEAT=1,
 * BENCH_SIDES=plain,engine,agent,patched, BENCH_PATCH=same|bulk-discount, BENCH_BASELINE=DIR,
 * BENCH_CACHE_SIM=1). Needs valgrind (`apt-get install valgrind`); each side takes about a minute
 * (about three with BENCH_CACHE_SIM=1).
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { benchPatchFiles, copyShop, median, type ShopCopy } from '../examples/bench-kit';
import { createDevToken, startShop } from '../examples/demo-app';
import { launch } from '../testkit/launch';

type Cannon = (opts: {
  url: string;
  connections: number;
  amount: number;
  timeout: number;
}) => Promise<{ requests: { total: number }; non2xx: number; errors: number }>;
// autocannon ships no type declarations; this is the slice of its programmatic API used here.
const autocannon: Cannon = require('autocannon');

const PATH = process.env['BENCH_PATH'] ?? '/quote?items=mug:3,tee:2,pen:1';
const [N1, N2] = (process.env['BENCH_N'] ?? '3000,9000').split(',').map(Number) as [number, number];
const REPEAT = Number(process.env['BENCH_REPEAT'] ?? 1);
const SIDES = new Set((process.env['BENCH_SIDES'] ?? 'plain,engine,agent,patched').split(','));
const PATCH = process.env['BENCH_PATCH'] ?? 'same';
const BASELINE = process.env['BENCH_BASELINE'];
const CACHE_SIM = process.env['BENCH_CACHE_SIM'] === '1';
const WRAPPER = [
  'valgrind',
  '--tool=cachegrind',
  ...(CACHE_SIM ? ['--cache-sim=yes', '--branch-sim=yes'] : ['--cache-sim=no']),
  '--cachegrind-out-file=/dev/null',
  '--smc-check=all-non-file',
];

/** One run's totals from cachegrind's summary (the miss and branch counts only with BENCH_CACHE_SIM=1). */
interface Counts {
  /** Instructions executed. */
  ir: number;
  /** First-level cache misses, instruction and data. */
  l1: number;
  /** Last-level cache misses, instruction and data. */
  ll: number;
  /** Mispredicted branches, conditional and indirect. */
  mispredicts: number;
}

/** The cycle estimate of a run (see the header): instructions plus weighted misses. */
const cycles = (c: Counts): number => c.ir + 10 * c.l1 + 10 * c.mispredicts + 100 * c.ll;

/** A total from cachegrind's summary (`==PID== I1  misses:   1,234`), 0 when the line is missing. */
function summary(output: string, label: string): number {
  const m = new RegExp(`==\\d+== ${label}:\\s+([\\d,]+)`).exec(output);
  return m ? Number(m[1]!.replace(/,/g, '')) : 0;
}

function parseCounts(output: string): Counts | undefined {
  const ir = summary(output, 'I\\s+refs');
  if (ir === 0) return undefined;
  return {
    ir,
    l1: summary(output, 'I1\\s+misses') + summary(output, 'D1\\s+misses'),
    ll: summary(output, 'LL misses'),
    mispredicts: summary(output, 'Mispredicts'),
  };
}

/** Per request: the slope between a run of n1 and one of n2 requests, field by field. */
function perRequest(a: Counts, b: Counts, n: number): Counts {
  return { ir: (b.ir - a.ir) / n, l1: (b.l1 - a.l1) / n, ll: (b.ll - a.ll) / n, mispredicts: (b.mispredicts - a.mispredicts) / n };
}

function describe(c: Counts): string {
  const ir = `${c.ir.toFixed(0).padStart(8)} instructions/request`;
  if (!CACHE_SIM) return ir;
  return `${ir}, L1 misses ${c.l1.toFixed(0)}, LL misses ${c.ll.toFixed(1)}, mispredicts ${c.mispredicts.toFixed(0)}, cycle estimate ${cycles(c).toFixed(0)}`;
}
/**
 * What makes counts repeat from run to run: V8's own work on the main thread (no GC helper or
 * compiler threads), fixed hash and random seeds (string hashing otherwise differs per process), and
 * a GC schedule that depends on allocation alone. Without these, one side's count varied by ±8 %
 * between processes; with them, by ±0.05 %.
 */
const NODE_FLAGS = ['--single-threaded', '--hash-seed=1', '--random-seed=1', '--predictable-gc-schedule'];

interface Running {
  child: ChildProcess;
  port: number;
  /** The tails of its stdout and stderr. */
  output(): string;
  stop(): Promise<void>;
}

interface Side {
  name: string;
  /** Start the side under valgrind, ready to serve (patched if the side says so). */
  start(): Promise<Running>;
  /** Per-request counts, one per repeat. */
  counts: Counts[];
}

function agentless(name: string, root: string, preload: string[]): Side {
  return {
    name,
    counts: [],
    async start() {
      const proc = await launch({
        args: [...NODE_FLAGS, ...preload, 'dist/main.js'],
        wrapper: WRAPPER,
        cwd: root,
        env: { PORT: '0', LIVEPATCH_ROOT: root, LIVEPATCH_TOKENS: undefined },
        name,
        timeoutMs: 300_000,
        ready: [{ stream: 'stdout', pattern: /app listening on (\d+)/ }],
      });
      return { child: proc.child, port: Number(proc.ready[0]![1]), output: proc.output, stop: proc.stop };
    },
  };
}

function withAgent(name: string, root: string, state: string, patched: boolean): Side {
  return {
    name,
    counts: [],
    async start() {
      const dir = mkdtempSync(join(state, 'side-'));
      const { tokensFile, token } = createDevToken(dir);
      const shop = await startShop({
        root,
        listen: '127.0.0.1:0',
        tokensFile,
        stateDir: dir,
        port: 0,
        timeoutMs: 300_000,
        wrapper: WRAPPER,
      });
      if (patched) {
        const client = await AgentClient.connect(shop.agent, { token, timeoutMs: 120_000 });
        try {
          await client.request(
            'apply',
            { patch: { files: benchPatchFiles(PATCH), message: 'instructions bench' } },
            { timeoutMs: 600_000 },
          );
        } finally {
          client.close();
        }
      }
      return { child: shop.child, port: shop.httpPort, output: () => shop.output(), stop: () => shop.stop() };
    },
  };
}

/** cachegrind's totals for one run of `side` that served `n` requests. */
async function countRun(side: Side, n: number): Promise<Counts> {
  const run = await side.start();
  try {
    const r = await autocannon({ url: `http://127.0.0.1:${run.port}${PATH}`, connections: 2, amount: n, timeout: 60 });
    if (r.requests.total < n || r.non2xx > 0 || r.errors > 0)
      throw new Error(`${side.name}: ${r.requests.total}/${n} requests, ${r.non2xx} non-2xx, ${r.errors} errors`);
    // valgrind prints the count once the process has exited; 'close' comes after its last output.
    const closed = new Promise<boolean>((res) => run.child.once('close', () => res(true)));
    run.child.kill('SIGINT');
    if (!(await Promise.race([closed, new Promise<boolean>((res) => setTimeout(res, 120_000, false))])))
      throw new Error(`${side.name}: did not exit on SIGINT`);
    const counts = parseCounts(run.output());
    if (!counts) throw new Error(`${side.name}: no instruction count in valgrind's output\n${run.output()}`);
    return counts;
  } finally {
    await run.stop();
  }
}

async function main(): Promise<void> {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('valgrind is needed (apt-get install valgrind)');
  }
  const shop = copyShop();
  const bare = copyShop({ standIn: true });
  const baseline = BASELINE === undefined ? undefined : copyShop({ livepatch: BASELINE });
  const copies: ShopCopy[] = [shop, bare, ...(baseline ? [baseline] : [])];
  const state = mkdtempSync(join(tmpdir(), 'lp-bench-instructions-'));
  const sides: Side[] = [agentless('plain node', bare.root, [])];
  if (SIDES.has('engine')) sides.push(agentless('engine only, no agent', shop.root, ['-r', 'livepatch/register']));
  if (SIDES.has('agent')) sides.push(withAgent('agent + pinning', shop.root, state, false));
  if (SIDES.has('patched')) sides.push(withAgent(`agent, after 1 patch (${PATCH})`, shop.root, state, true));
  if (baseline) {
    if (SIDES.has('engine')) sides.push(agentless('engine only, baseline', baseline.root, ['-r', 'livepatch/register']));
    if (SIDES.has('agent')) sides.push(withAgent('agent + pinning, baseline', baseline.root, state, false));
  }
  console.log(
    `instructions per request: GET ${PATH}, ${N1} and ${N2} requests per side, ${REPEAT} repeat(s), ${process.version}${CACHE_SIM ? ', caches and branches simulated' : ''}`,
  );
  try {
    for (let r = 0; r < REPEAT; r++) {
      for (const side of sides) {
        const a = await countRun(side, N1);
        const b = await countRun(side, N2);
        side.counts.push(perRequest(a, b, N2 - N1));
        console.log(`  ${side.name.padEnd(34)} ${describe(side.counts.at(-1)!)}`);
      }
    }
    const measures: [string, (c: Counts) => number][] = [['instructions', (c) => c.ir]];
    if (CACHE_SIM) measures.push(['cycle estimate', cycles]);
    for (const [label, of] of measures) {
      const base = median(sides[0]!.counts.map(of));
      console.log(`\nmedians, ${label} per request`);
      for (const side of sides) {
        const xs = side.counts.map(of);
        const m = median(xs);
        console.log(
          `  ${side.name.padEnd(34)} ${m.toFixed(0).padStart(8)}   Δ ${(m - base).toFixed(0).padStart(6)}   plain ÷ side ×${(base / m).toFixed(3)}   (runs: ${xs.map((x) => x.toFixed(0)).join(', ')})`,
        );
      }
    }
  } finally {
    rmSync(state, { recursive: true, force: true });
    for (const c of copies) c.cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
