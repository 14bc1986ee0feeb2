/**
 * Per-generation health: how the code of each generation behaves in production.
 *
 * Each generation owns one fixed-size Float64Array (`Health`, ~0.8 KB): requests finished, responses
 * by status class, requests whose handler threw or whose socket went away before the response was
 * sent, uncaught exceptions and unhandled rejections attributed to the generation, and a latency
 * histogram (4 buckets per octave of microseconds, 1 µs to ~16 s). Counting a request is a few array
 * increments; nothing is allocated per request. Start times are integer microseconds truncated to 30
 * bits (small integers, so no boxed number is made), which bounds one request's measurable latency
 * to ~17 minutes.
 *
 * Every request is counted, but above TIMED_PER_SECOND requests per second only one in `stride`
 * (a power of two, at most MAX_STRIDE) is timed, and each timed one weighs `stride` in the histogram:
 * the two clock reads and the bucket are most of what counting costs, and a thousand timed requests a
 * second are plenty for a 2-second window's p99. The stride is retuned every CHECK_EVERY requests
 * from the time those took (one clock read); below that rate every request is timed.
 */
import { performance } from 'node:perf_hooks';
import type { GenerationHealth } from '../../shared/health';

/** Indexes into a Health array. */
export const H_REQUESTS = 0;
/** 2xx..5xx: H_STATUS + class - 2. */
export const H_STATUS = 1;
export const H_THREW = 5;
export const H_DESTROYED = 6;
export const H_UNCAUGHT = 7;
export const H_REJECTIONS = 8;
export const H_HIST = 9;
/** Histogram buckets: bucket i holds latencies in [2^(i/4), 2^((i+1)/4)) µs; the last one everything above. */
export const H_BUCKETS = 96;
export const H_SIZE = H_HIST + H_BUCKETS;

export type Health = Float64Array;

export function newHealth(): Health {
  return new Float64Array(H_SIZE);
}

/** Now, in integer microseconds modulo 2^30 (a small integer: no allocation). */
export function nowUs(): number {
  return (performance.now() * 1000) & US_MASK;
}
const US_MASK = 0x3fffffff;

/** What a request that is counted but not timed has as its start time. */
export const NOT_TIMED = -1;
/** Below this many requests per second, every request is timed. */
const TIMED_PER_SECOND = 1024;
/** The largest stride: at the highest rates, one request in this many is timed. */
const MAX_STRIDE = 16;
/** Requests between two retunings of the stride (a power of two). */
const CHECK_EVERY = 4096;

/** Requests started (modulo 2^31), the current stride, and when it was last retuned (nowUs). */
let seq = 0;
let stride = 1;
let tunedAt = 0;

/** A request starts: its start time (nowUs) if it is one of the timed ones, else NOT_TIMED. */
export function startRequest(): number {
  seq = (seq + 1) & 0x7fffffff;
  if ((seq & (CHECK_EVERY - 1)) === 0) retune();
  return (seq & (stride - 1)) === 0 ? nowUs() : NOT_TIMED;
}

/** Pick the largest stride that still times TIMED_PER_SECOND requests a second at the last rate. */
function retune(): void {
  const t = nowUs();
  const elapsedUs = Math.max(1, (t - tunedAt) & US_MASK);
  tunedAt = t;
  const perSecond = (CHECK_EVERY * 1e6) / elapsedUs;
  let s = 1;
  while (s < MAX_STRIDE && perSecond / (s * 2) >= TIMED_PER_SECOND) s *= 2;
  stride = s;
}

/** The current stride (tests and benchmarks). */
export function latencyStride(): number {
  return stride;
}

function bucketOf(us: number): number {
  if (us < 1) return 0;
  const b = Math.floor(Math.log2(us) * 4);
  return b < H_BUCKETS ? b : H_BUCKETS - 1;
}

/**
 * Count one request that ended: `threw` when its handler threw synchronously; `t0` its start time
 * from `startRequest` (or `nowUs`), or NOT_TIMED, which counts it without a latency.
 */
export function recordRequest(
  h: Health,
  res: { statusCode?: number; writableFinished?: boolean } | undefined,
  t0: number,
  threw: boolean,
): void {
  h[H_REQUESTS]!++;
  if (threw) h[H_THREW]!++;
  else if (res && res.writableFinished) {
    const c = ((res.statusCode ?? 0) / 100) | 0;
    if (c >= 2 && c <= 5) h[H_STATUS + c - 2]!++;
  } else h[H_DESTROYED]!++;
  if (t0 !== NOT_TIMED) h[H_HIST + bucketOf((nowUs() - t0) & US_MASK)]! += stride;
}

/** `a - b` into a new array (window figures from two cumulative snapshots). */
export function diffHealth(a: Health, b: Health | undefined): Health {
  const out = newHealth();
  for (let i = 0; i < H_SIZE; i++) out[i] = a[i]! - (b ? b[i]! : 0);
  return out;
}

/** The latency (ms) below which a fraction `q` of the counted requests fell (a bucket's upper edge). */
export function quantileMs(h: Health, q: number): number | undefined {
  let total = 0;
  for (let i = 0; i < H_BUCKETS; i++) total += h[H_HIST + i]!;
  if (total === 0) return undefined;
  const want = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < H_BUCKETS; i++) {
    seen += h[H_HIST + i]!;
    if (seen >= want) return Math.round(2 ** ((i + 1) / 4)) / 1000;
  }
  return undefined;
}

/**
 * Failed work: requests that ended in a 5xx, a synchronous throw or a torn-down socket, plus uncaught
 * exceptions and unhandled rejections; the error rate is that over requests finished.
 */
export function errorsOf(h: Health): number {
  return h[H_STATUS + 3]! + h[H_THREW]! + h[H_DESTROYED]! + h[H_UNCAUGHT]! + h[H_REJECTIONS]!;
}

/** The wire form of a Health array. */
export function summarizeHealth(h: Health): GenerationHealth {
  const requests = h[H_REQUESTS]!;
  const errors = errorsOf(h);
  const out: GenerationHealth = {
    requests,
    status: { '2xx': h[H_STATUS]!, '3xx': h[H_STATUS + 1]!, '4xx': h[H_STATUS + 2]!, '5xx': h[H_STATUS + 3]! },
    threw: h[H_THREW]!,
    destroyed: h[H_DESTROYED]!,
    uncaught: h[H_UNCAUGHT]!,
    rejections: h[H_REJECTIONS]!,
    errors,
    errorRate: requests > 0 ? Math.round((errors / requests) * 10000) / 10000 : 0,
  };
  const p50 = quantileMs(h, 0.5);
  const p99 = quantileMs(h, 0.99);
  if (p50 !== undefined) out.p50Ms = p50;
  if (p99 !== undefined) out.p99Ms = p99;
  return out;
}
