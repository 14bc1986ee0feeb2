/**
 * Benchmark 1 — overhead: req/s and p99 latency of the example shop run with the agent and request
 * pinning (`node -r livepatch/register`), against the same shop run as plain `node dist/main.js`.
 * A third process runs with the agent after one patch was applied (trampolines reassigned), and a
 * fourth with the engine but no agent (splits the cost between the two). The plain
 * side runs with a no-op stand-in for the `livepatch` import (keep → init(), pin → fn()), i.e. the app
 * exactly as it would run without livepatch installed.
 *
 * All processes run side by side; autocannon runs rotate between them (A B C D, B C D A, ...) so drift
 * in the machine's load hits every side alike. Prints each run, the medians and the ratios, and the
 * server's CPU time per request (from /proc), which stays meaningful when other work shares the CPUs.
 *
 * Cores: on Linux with `taskset` and at least 2 CPUs, every server (all its threads) is pinned to CPU 0
 * and this process, which runs autocannon, to CPU 1, so the load generator never competes with the
 * server it measures (BENCH_PIN=0 turns this off; BENCH_PIN=a,b picks the two CPUs).
 * Usage: node dist/bench/overhead.js   (env BENCH_ROUNDS=6, BENCH_SECONDS=5, BENCH_CONNECTIONS=10,
 * BENCH_PATH=/health for a trivial handler instead of the quote, BENCH_SIDES=plain,engine,agent,patched
 * to run only some of the four sides; plain always runs, as the baseline, and `again` adds a second plain
 * process of the same build (an A/A control: how far two identical sides land apart); BENCH_PATCH=same patches the two
 * modules with their own source plus a comment instead of the bulk-discount change; BENCH_BASELINE=DIR[,DIR…],
 * built checkouts of other livepatch versions, adds each one's engine-only and agent sides to the same
 * rounds, so a change to the engine is measured against the code before it, side by side, and each
 * baseline's engine side is also set against this build's; BENCH_CONCURRENT=1
 * loads every side at once instead of one after another, BENCH_PROCESSES=N starts fresh processes for every
 * side N times, BENCH_ROUNDS rounds each, and prints the ratios set by set, their geometric mean and its
 * 95 % bootstrap interval)
 *
 * CPU per request is the scheduler's run time of the server's threads over the requests served, and
 * each side's ratio to plain node is taken round by round (paired), with the quartiles of those ratios:
 * on a shared 2-core VM, the spread between rounds is as telling as the median. The main thread's
 * part is printed too: it separates the JavaScript thread's work from V8's helper threads (GC,
 * compilers).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { benchPatchFiles, copyShop, geomeanInterval, median, percentile } from '../examples/bench-kit';
import { createDevToken, startShop } from '../examples/demo-app';
import { launch } from '../testkit/launch';

interface CannonResult {
  requests: { average: number; total: number };
  latency: { p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
}
type Cannon = (opts: { url: string; connections: number; duration: number; pipelining?: number }) => Promise<CannonResult>;
// autocannon ships no type declarations; this is the slice of its programmatic API used here.
const autocannon: Cannon = require('autocannon');

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 6);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 10);
const PATH = process.env['BENCH_PATH'] ?? '/quote?items=mug:3,tee:2,pen:1';
/** `bulk-discount` (the example patch, default) or `same` (the patched modules' own source plus a comment). */
const PATCH = process.env['BENCH_PATCH'] ?? 'bulk-discount';
/** Other built livepatch checkouts (comma-separated) whose engine and agent run side by side with this one's. */
const BASELINES = (process.env['BENCH_BASELINE'] ?? '').split(',').filter((d) => d !== '');
/**
 * Every side under load at the same time (one autocannon per side, all servers sharing one core)
 * instead of one after another: the machine's swings then hit every side in the same instant. The
 * servers then also take turns on one core's caches, which costs a process with more code and heap
 * more than a smaller one, so this mode leans against the livepatch sides (BENCHMARKS.md).
 */
const CONCURRENT = process.env['BENCH_CONCURRENT'] === '1';
const SIDES = new Set((process.env['BENCH_SIDES'] ?? 'plain,engine,agent,patched').split(','));
/**
 * Fresh processes for every side this many times (BENCH_ROUNDS rounds each). One process of a side can
 * run a few per cent faster or slower than another of the same build for its whole life (where its
 * code and heap land in memory, what the JIT decided while warming up), so a single set of processes
 * measures those processes as much as the sides. Each set then gives one ratio per side (the median of
 * its rounds), and the ratios' spread across sets is printed.
 */
const PROCESSES = Math.max(1, Number(process.env['BENCH_PROCESSES'] ?? 1));

/** The two CPUs to pin servers and the load generator to, or undefined when not pinning. */
const PIN = ((): [number, number] | undefined => {
  const v = process.env['BENCH_PIN'] ?? '1';
  if (v === '0' || process.platform !== 'linux' || availableParallelism() < 2) return undefined;
  const [a, b] = v.includes(',') ? v.split(',').map(Number) : [0, 1];
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  return [a!, b!];
})();

/** Pin every thread of `pid` to `cpu` (threads it starts later inherit it). */
function pin(pid: number, cpu: number): void {
  execFileSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' });
}

interface Side {
  name: string;
  port: number;
  pid: number;
  /** Server CPU time per request (µs), one entry per run. */
  cpu: number[];
  /** The part of it on the main (JavaScript) thread, the rest being V8's and libuv's helper threads. */
  mainCpu: number[];
  rps: number[];
  p99: number[];
  failed: number;
  stop(): Promise<void>;
}

/** The shop without the agent: plain node, or with the engine preloaded (`-r livepatch/register`, no tokens). */
async function agentlessShop(root: string, name: string, preload: string[]): Promise<Side> {
  const shop = await launch({
    args: [...preload, 'dist/main.js'],
    cwd: root,
    env: { PORT: '0', LIVEPATCH_ROOT: root, LIVEPATCH_TOKENS: undefined },
    name,
    ready: [{ stream: 'stdout', pattern: /app listening on (\d+)/ }],
  });
  if (PIN) pin(shop.pid, PIN[0]);
  return { name, port: Number(shop.ready[0]![1]), pid: shop.pid, cpu: [], mainCpu: [], rps: [], p99: [], failed: 0, stop: shop.stop };
}

async function agentShop(root: string, name: string, state: string, patched: boolean): Promise<Side> {
  const dir = mkdtempSync(join(state, 'side-'));
  const { tokensFile, token } = createDevToken(dir);
  const shop = await startShop({ root, listen: '127.0.0.1:0', tokensFile, stateDir: dir, port: 0 });
  if (patched) {
    const client = await AgentClient.connect(shop.agent, { token });
    try {
      await client.request('apply', { patch: { files: benchPatchFiles(PATCH), message: 'overhead bench' } });
    } finally {
      client.close();
    }
  }
  if (PIN) pin(shop.child.pid!, PIN[0]);
  return { name, port: shop.httpPort, pid: shop.child.pid!, cpu: [], mainCpu: [], rps: [], p99: [], failed: 0, stop: () => shop.stop() };
}

/**
 * CPU time of a process so far, in µs, in all and on its main thread: the scheduler's run time of each
 * of its threads (Linux /proc/PID/task/TID/schedstat, in ns), or, where that is missing, user + system
 * time (/proc/PID/stat, in clock ticks of 10 ms; the main thread's share is then unknown, NaN).
 */
function cpuMicros(pid: number): { all: number; main: number } {
  try {
    let ns = 0;
    let main = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const t = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        ns += t;
        if (tid === String(pid)) main = t;
      } catch {
        // the thread ended between the listing and the read
      }
    }
    if (ns > 0) return { all: ns / 1000, main: main / 1000 };
  } catch {
    // no schedstat: fall back to clock ticks
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { all: (Number(fields[11]) + Number(fields[12])) * 10_000, main: NaN };
}

async function run(side: Side, seconds: number, record: boolean): Promise<void> {
  const cpu0 = cpuMicros(side.pid);
  const r = await autocannon({ url: `http://127.0.0.1:${side.port}${PATH}`, connections: CONNECTIONS, duration: seconds });
  if (!record) return;
  const cpu1 = cpuMicros(side.pid);
  side.cpu.push((cpu1.all - cpu0.all) / Math.max(1, r.requests.total));
  side.mainCpu.push((cpu1.main - cpu0.main) / Math.max(1, r.requests.total));
  side.rps.push(r.requests.average);
  side.p99.push(r.latency.p99);
  side.failed += r.errors + r.timeouts + r.non2xx;
  console.log(
    `  ${side.name.padEnd(22)} ${r.requests.average.toFixed(0).padStart(7)} req/s   p99 ${String(r.latency.p99).padStart(3)} ms   server CPU ${side.cpu[side.cpu.length - 1]!.toFixed(1)} µs/req`,
  );
}

/** The A/A control's name: a second process of plain node (`BENCH_SIDES=…,again`). */
const AGAIN = 'plain node, again';

/** This build's engine-only side, and the start of each baseline's. */
const ENGINE = 'engine only, no agent';
const ENGINE_BASELINE = 'engine only, baseline';

/** Start one process per side, in the order the results are printed (plain node first). */
async function startSides(roots: { shop: string; bare: string; baselines: string[] }, state: string): Promise<Side[]> {
  const sides: Side[] = [];
  try {
    sides.push(await agentlessShop(roots.bare, 'plain node', []));
    if (SIDES.has('again')) sides.push(await agentlessShop(roots.bare, AGAIN, []));
    if (SIDES.has('engine')) sides.push(await agentlessShop(roots.shop, ENGINE, ['-r', 'livepatch/register']));
    if (SIDES.has('agent')) sides.push(await agentShop(roots.shop, 'agent + pinning', state, false));
    if (SIDES.has('patched')) sides.push(await agentShop(roots.shop, 'agent, after 1 patch', state, true));
    for (const [i, root] of roots.baselines.entries()) {
      const which = roots.baselines.length > 1 ? ` ${i + 1}` : '';
      if (SIDES.has('engine')) sides.push(await agentlessShop(root, ENGINE_BASELINE + which, ['-r', 'livepatch/register']));
      if (SIDES.has('agent')) sides.push(await agentShop(root, `agent + pinning, baseline${which}`, state, false));
    }
    return sides;
  } catch (e) {
    for (const s of sides) await s.stop();
    throw e;
  }
}

const loadAverage = (): string =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');

async function main(): Promise<void> {
  const shop = copyShop();
  const bare = copyShop({ standIn: true });
  const state = mkdtempSync(join(tmpdir(), 'lp-bench-overhead-'));
  // The same shop, with `livepatch` resolving to each baseline checkout.
  const baselines = BASELINES.map((dir) => copyShop({ livepatch: dir }));
  const roots = { shop: shop.root, bare: bare.root, baselines: baselines.map((b) => b.root) };
  /** Every round of every set, per side (in print order), and each set's median CPU per request. */
  let all: Side[] = [];
  const setCpu: number[][] = [];
  let sides: Side[] = [];
  try {
    if (PIN) pin(process.pid, PIN[1]);
    console.log(
      `overhead: Node ${process.version}, GET ${PATH}, ${CONNECTIONS} connections, ${PROCESSES > 1 ? `${PROCESSES} sets of processes × ` : ''}${ROUNDS} rounds × ${SECONDS} s per side, ${CONCURRENT ? 'all sides at once' : 'alternating'}, ${PIN ? `servers on CPU ${PIN[0]}, load generator on CPU ${PIN[1]}` : 'not pinned'} (load average ${loadAverage()})`,
    );
    for (let set = 0; set < PROCESSES; set++) {
      sides = await startSides(roots, state);
      if (PROCESSES > 1) console.log(`processes, set ${set + 1} of ${PROCESSES}`);
      for (const s of sides) await run(s, 2, false); // warm-up (JIT, connection pools)
      for (let round = 0; round < ROUNDS; round++) {
        console.log(`round ${round + 1}`);
        if (CONCURRENT) await Promise.all(sides.map((s) => run(s, SECONDS, true)));
        // Rotated every round (A B C, B C A, C A B, ...): every side takes every place in the order
        // equally often, so none always runs first after the pause or right after the same neighbour.
        else for (let i = 0; i < sides.length; i++) await run(sides[(i + round) % sides.length]!, SECONDS, true);
      }
      for (const s of sides) await s.stop();
      setCpu.push(sides.map((s) => median(s.cpu)));
      all = set === 0 ? sides : all.map((a, i) => merge(a, sides[i]!));
      sides = [];
    }
    report(all, setCpu);
  } finally {
    for (const s of sides) await s.stop();
    rmSync(state, { recursive: true, force: true });
    shop.cleanup();
    bare.cleanup();
    for (const b of baselines) b.cleanup();
  }
}

/** One side's rounds from two sets of processes, as one list of rounds. */
function merge(a: Side, b: Side): Side {
  return {
    ...a,
    cpu: [...a.cpu, ...b.cpu],
    mainCpu: [...a.mainCpu, ...b.mainCpu],
    rps: [...a.rps, ...b.rps],
    p99: [...a.p99, ...b.p99],
    failed: a.failed + b.failed,
  };
}

function report(sides: Side[], setCpu: number[][]): void {
  const base = sides[0]!;
  console.log(`\nmedians (load average at the end: ${loadAverage()})`);
  for (const s of sides) {
    const rps = median(s.rps);
    const p99 = median(s.p99);
    // Paired ratio: each run against the plain run of the same round, which shares the machine's
    // momentary load; the median of these is steadier than the ratio of medians on a busy machine.
    const paired = median(s.rps.map((x, i) => x / base.rps[i]!));
    // CPU per request is far less sensitive to other load than req/s: its inverse ratio is the
    // throughput ratio a CPU-bound server would reach on an idle machine.
    const cpu = median(s.cpu);
    // The same per round for CPU per request, with the quartiles of the rounds' ratios.
    const cpuRatios = s.cpu.map((x, i) => base.cpu[i]! / x);
    const cpuPaired = `${median(cpuRatios).toFixed(3)}, quartiles ${percentile(cpuRatios, 25).toFixed(3)}–${percentile(cpuRatios, 75).toFixed(3)}`;
    console.log(
      `  ${s.name.padEnd(22)} ${rps.toFixed(0).padStart(7)} req/s (×${(rps / median(base.rps)).toFixed(3)}, paired ×${paired.toFixed(3)})   p99 ${p99} ms (×${(p99 / median(base.p99)).toFixed(2)})   CPU ${cpu.toFixed(1)} µs/req (main thread ${median(s.mainCpu).toFixed(1)}; throughput-equivalent ×${(median(base.cpu) / cpu).toFixed(3)}, paired ×${cpuPaired})   failed ${s.failed}`,
    );
  }
  if (setCpu.length < 2) return;
  // One ratio per set of processes: plain's median CPU per request over the side's, in that set.
  console.log(`\nby set of processes (CPU ratio plain ÷ side, each set's medians; ${setCpu.length} sets)`);
  sides.forEach((s, i) => {
    if (i === 0) return;
    const ratios = setCpu.map((set) => set[0]! / set[i]!);
    const sorted = [...ratios].sort((x, y) => x - y);
    // Each set's processes are a fresh draw of where code and heap land: the sets are the samples, so
    // the interval is over sets (resampled), not over rounds, which share their processes.
    const g = geomeanInterval(ratios);
    console.log(
      `  ${s.name.padEnd(22)} median ×${median(ratios).toFixed(3)}, range ${sorted[0]!.toFixed(3)}–${sorted.at(-1)!.toFixed(3)}, geometric mean ×${g.mean.toFixed(3)} (95 % interval ${g.low.toFixed(3)}–${g.high.toFixed(3)})   (sets: ${ratios.map((r) => r.toFixed(3)).join(', ')})`,
    );
  });
  // Each baseline's engine side against this build's, set by set: the comparison a change to the engine
  // is judged by (above 1, the baseline is the cheaper of the two).
  const engine = sides.findIndex((s) => s.name === ENGINE);
  const others = sides.flatMap((s, i) => (s.name.startsWith(ENGINE_BASELINE) ? [i] : []));
  if (engine >= 0 && others.length > 0) {
    console.log(`\nthis build against each baseline (CPU ratio this build's engine side ÷ the baseline's, by set)`);
    for (const i of others) {
      const g = geomeanInterval(setCpu.map((set) => set[engine]! / set[i]!));
      console.log(
        `  ${sides[i]!.name.padEnd(22)} geometric mean ${g.mean.toFixed(3)} (95 % interval ${g.low.toFixed(3)}–${g.high.toFixed(3)})`,
      );
    }
  }
  // With a second plain process in every set (BENCH_SIDES=…,again), each side is also set against
  // both plain processes of its set (the geometric mean of their CPU per request): the baseline's own
  // process-to-process spread then weighs half as much in every ratio.
  const again = sides.findIndex((s) => s.name === AGAIN);
  if (again < 0) return;
  console.log(`\nagainst both plain processes of each set (CPU ratio √(plain × plain again) ÷ side)`);
  sides.forEach((s, i) => {
    if (i === 0 || i === again) return;
    const g = geomeanInterval(setCpu.map((set) => Math.sqrt(set[0]! * set[again]!) / set[i]!));
    console.log(`  ${s.name.padEnd(22)} geometric mean ×${g.mean.toFixed(3)} (95 % interval ${g.low.toFixed(3)}–${g.high.toFixed(3)})`);
  });
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
