/**
 * What counting one request in its generation's health costs, in-process: `nowUs()` when it arrives
 * and `recordRequest()` when it ends (a 200 response), minus an empty loop; the same the way requests
 * are counted, through `startRequest()`, which at these rates times one request in 16; and the heap
 * after millions more (nothing is allocated per request). The HTTP-level comparison is http-overhead with BENCH_BASELINE.
 * Usage: node dist/bench/health-count.js   (env BENCH_ROUNDS=5, BENCH_CALLS=5000000)
 */
import { latencyStride, newHealth, nowUs, recordRequest, startRequest } from '../server/engine/health';
import { performance } from 'node:perf_hooks';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const N = Number(process.env['BENCH_CALLS'] ?? 5_000_000);
const h = newHealth();
const res = { statusCode: 200, writableFinished: true };

function counted(): void {
  for (let i = 0; i < N; i++) recordRequest(h, res, nowUs(), false);
}
function sampled(): void {
  for (let i = 0; i < N; i++) recordRequest(h, res, startRequest(), false);
}
function clockOnly(): number {
  let s = 0;
  for (let i = 0; i < N; i++) s += performance.now();
  return s;
}
function empty(): number {
  let x = 0;
  for (let i = 0; i < N; i++) x += i & 1;
  return x;
}
const time = (fn: () => unknown): number => {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / N;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const perReq: number[] = [];
const perSampled: number[] = [];
const clock: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const base = time(empty);
  perReq.push(time(counted) - base);
  perSampled.push(time(sampled) - base);
  clock.push(time(clockOnly) - base);
}
const heap0 = process.memoryUsage().heapUsed;
counted();
const heap1 = process.memoryUsage().heapUsed;
console.log(`health-count: ${ROUNDS} rounds x ${N} requests, Node ${process.version}`);
console.log(
  `per request counted (2 clock reads + record): median ${median(perReq).toFixed(1)} ns   (rounds: ${perReq.map((x) => x.toFixed(1)).join(' ')})`,
);
console.log(
  `per request as counted (1 in ${latencyStride()} timed):       median ${median(perSampled).toFixed(1)} ns   (rounds: ${perSampled.map((x) => x.toFixed(1)).join(' ')})`,
);
console.log(`one performance.now() alone:                  median ${median(clock).toFixed(1)} ns`);
console.log(`heap change over ${N} more counted requests: ${((heap1 - heap0) / 1024).toFixed(0)} KiB`);
