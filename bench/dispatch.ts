/**
 * Engine dispatch cost: ns per call of a direct call vs a call through a live module's facade, in the
 * states the engine goes through: deployed (cell never reassigned), after a commit (one generation
 * live, cell reassigned), and while two generations are live (unpinned and pinned callers pay the
 * AsyncLocalStorage lookup). Functions and class methods. Runs alternate; medians are printed. Also
 * the CPU cost of an async function with two awaits before and after AsyncLocalStorage is enabled
 * (by request pinning), which on Node 20 every promise pays.
 * Usage: node dist/bench/dispatch.js   (env BENCH_ROUNDS=7, BENCH_CALLS=20000000)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as ts from 'typescript';
import { install, pin } from '../server/engine';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7);
const CALLS = Number(process.env['BENCH_CALLS'] ?? 20_000_000);

const SOURCE = `export function add(a: number, b: number): number { return a + b; }
export class Acc { total = 0; push(n: number): number { this.total += n; return this.total; } }
`;
const js = (src: string): string =>
  ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;

// The same code, not live: the direct-call baseline.
function addDirect(a: number, b: number): number {
  return a + b;
}
class AccDirect {
  total = 0;
  push(n: number): number {
    this.total += n;
    return this.total;
  }
}

type Fn = (a: number, b: number) => number;
type Loop<T> = (target: T, calls: number) => number;
// Each measured target gets its own loop (own call-site feedback), so targets do not make one
// shared call site megamorphic and skew each other.
const fnLoop = (): Loop<Fn> =>
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- each target gets a loop of its own (own call-site feedback)
  new Function(
    'f',
    'n',
    'let x = 0; const t0 = process.hrtime.bigint(); for (let i = 0; i < n; i++) x = f(x, 1) & 0xffff; const ns = Number(process.hrtime.bigint() - t0) / n; if (x < 0) console.log(x); return ns;',
  ) as Loop<Fn>;
const methodLoop = (): Loop<{ push(n: number): number }> =>
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- as fnLoop
  new Function(
    'o',
    'n',
    'let x = 0; const t0 = process.hrtime.bigint(); for (let i = 0; i < n; i++) x ^= o.push(1); const ns = Number(process.hrtime.bigint() - t0) / n; if (x === 0.5) console.log(x); return ns;',
  ) as Loop<{ push(n: number): number }>;
const loops = new Map<string, Loop<any>>();
/** ns per call of `target` measured with the loop dedicated to `name`. */
function time(name: string, kind: 'fn' | 'method', target: unknown): number {
  let loop = loops.get(name);
  if (!loop) loops.set(name, (loop = kind === 'fn' ? fnLoop() : methodLoop()));
  return loop(target, CALLS);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function twoAwaits(i: number): Promise<number> {
  await Promise.resolve();
  await Promise.resolve();
  return i;
}
/** CPU ns per async function with two awaits (what every promise-heavy handler pays per step). */
async function asyncCost(): Promise<number> {
  const n = 100_000;
  const t0 = process.cpuUsage();
  const ps: Promise<number>[] = [];
  for (let i = 0; i < n; i++) ps.push(twoAwaits(i));
  await Promise.all(ps);
  const d = process.cpuUsage(t0);
  return ((d.user + d.system) * 1000) / n;
}

async function main(): Promise<void> {
  // Before anything was pinned, AsyncLocalStorage is not enabled: the baseline promise cost.
  const asyncOff: number[] = [];
  for (let r = 0; r < ROUNDS; r++) asyncOff.push(await asyncCost());
  const root = mkdtempSync(join(tmpdir(), 'lp-bench-dispatch-'));
  const write = (rel: string, text: string): void => {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  };
  write('tsconfig.json', '{ "compilerOptions": { "rootDir": "src", "outDir": "dist" } }');
  write('src/calc.ts', SOURCE);
  write('dist/calc.js', js(SOURCE));
  const engine = install({ root });
  const live = require(join(root, 'dist/calc.js'));
  const results = new Map<string, number[]>();
  const record = (name: string, ns: number): void => void results.set(name, [...(results.get(name) ?? []), ns]);
  const direct = new AccDirect();
  const inst = new live.Acc();

  const phase = async (label: string, extra?: () => void): Promise<void> => {
    for (let r = 0; r < ROUNDS; r++) {
      record('direct function', time('direct function', 'fn', addDirect));
      record(`facade function, ${label}`, time(`facade function, ${label}`, 'fn', live.add));
      record('direct method', time('direct method', 'method', direct));
      record(`facade method, ${label}`, time(`facade method, ${label}`, 'method', inst));
      extra?.();
      await new Promise((res) => setImmediate(res));
    }
  };
  await phase('deployed');
  const patched = SOURCE.replace('return a + b', 'return b + a');
  engine.commit(await engine.stage([{ id: 'src/calc.ts', source: patched, js: js(patched) }]));
  await phase('after a commit');
  // Keep the old generation live with a pinned task that has not finished: two generations live.
  let finish!: () => void;
  const held = pin(() => new Promise<void>((r) => (finish = r)));
  const again = patched.replace('b + a', 'a + b + 0');
  engine.commit(await engine.stage([{ id: 'src/calc.ts', source: again, js: js(again) }]));
  await phase('2 generations live (unpinned)');
  await engine.pin(async () => {
    for (let r = 0; r < ROUNDS; r++) record('facade function, 2 generations live (pinned)', time('pinned', 'fn', live.add));
  });
  // Two generations live: AsyncLocalStorage is enabled and every promise pays its async_hooks hook.
  const asyncOn: number[] = [];
  for (let r = 0; r < ROUNDS; r++) asyncOn.push(await asyncCost());
  finish();
  await held;
  // Drained back to one generation: AsyncLocalStorage is disabled again.
  const asyncAfter: number[] = [];
  for (let r = 0; r < ROUNDS; r++) asyncAfter.push(await asyncCost());

  console.log(
    `dispatch: ${CALLS} calls per run, ${ROUNDS} runs, medians (Node ${process.version}, ${require('node:os').cpus().length} cores)`,
  );
  const base = { function: median(results.get('direct function')!), method: median(results.get('direct method')!) };
  for (const [name, xs] of results) {
    const m = median(xs);
    const ref = name.includes('method') ? base.method : base.function;
    console.log(`${name.padEnd(48)} ${m.toFixed(2).padStart(7)} ns/call   +${(m - ref).toFixed(2)} ns vs direct`);
  }
  const off = median(asyncOff);
  const on = median(asyncOn);
  const after = median(asyncAfter);
  console.log(`async fn with 2 awaits, one generation (no ALS)   ${off.toFixed(0).padStart(7)} ns CPU`);
  console.log(
    `async fn with 2 awaits, 2 generations live (ALS)  ${on.toFixed(0).padStart(7)} ns CPU   +${(on - off).toFixed(0)} ns (Node 20 async_hooks propagation)`,
  );
  console.log(`async fn with 2 awaits, drained to one again      ${after.toFixed(0).padStart(7)} ns CPU   +${(after - off).toFixed(0)} ns`);
  rmSync(root, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
