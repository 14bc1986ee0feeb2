/**
 * The pieces of health and the watch that are pure functions: the histogram and its quantiles, the
 * verdict on a pair of figures (error rate, p99 with its floor, minimum requests), and the CLI's
 * parsing of --watch and its thresholds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  H_DESTROYED,
  H_HIST,
  H_REQUESTS,
  H_STATUS,
  H_THREW,
  latencyStride,
  newHealth,
  NOT_TIMED,
  nowUs,
  quantileMs,
  recordRequest,
  startRequest,
  summarizeHealth,
} from '../server/engine/health';
import { judge } from '../server/agent/watch';
import { watchFrom } from '../client/cli/commands/apply';
import { parseDuration, type GenerationHealth, type WatchFigures } from '../shared';

test('requests land in their status class, thrown or torn-down bucket, and the latency histogram', () => {
  const h = newHealth();
  const t0 = nowUs();
  recordRequest(h, { statusCode: 200, writableFinished: true }, t0, false);
  recordRequest(h, { statusCode: 503, writableFinished: true }, t0, false);
  recordRequest(h, { statusCode: 200, writableFinished: false }, t0, false);
  recordRequest(h, undefined, t0, true);
  assert.equal(h[H_REQUESTS], 4);
  assert.equal(h[H_STATUS], 1);
  assert.equal(h[H_STATUS + 3], 1);
  assert.equal(h[H_DESTROYED], 1);
  assert.equal(h[H_THREW], 1);
  const s = summarizeHealth(h);
  assert.equal(s.errors, 3);
  assert.equal(s.errorRate, 0.75);
  assert.equal(typeof s.p99Ms, 'number');
});

test('above ~1000 requests a second only one in a stride is timed, each weighing the stride: the histogram still adds up to the requests', () => {
  const h = newHealth();
  const n = 200_000;
  let timed = 0;
  // Millions of starts a second, far above the rate at which every request is timed.
  for (let i = 0; i < n; i++) {
    const t0 = startRequest();
    if (t0 !== NOT_TIMED) timed++;
    recordRequest(h, { statusCode: 200, writableFinished: true }, t0, false);
  }
  assert.equal(h[H_REQUESTS], n);
  assert.equal(h[H_STATUS], n, 'every request is counted in its status class');
  assert.equal(latencyStride(), 16);
  assert.ok(timed < n / 8, `timed ${timed} of ${n}`);
  let total = 0;
  for (let i = H_HIST; i < h.length; i++) total += h[i]!;
  // The first CHECK_EVERY requests are all timed at weight 1; the stride changes only at retunings.
  assert.ok(Math.abs(total - n) <= 64, `histogram total ${total} for ${n} requests`);
  // A request that is not timed is counted without a latency.
  const u = newHealth();
  recordRequest(u, { statusCode: 500, writableFinished: true }, NOT_TIMED, false);
  assert.equal(u[H_REQUESTS], 1);
  assert.equal(u[H_STATUS + 3], 1);
  assert.equal(
    u.slice(H_HIST).reduce((a, b) => a + b, 0),
    0,
  );
});

test('quantiles come from the bucket holding the q-th request (upper edge, ~19 % wide)', () => {
  const h = newHealth();
  // 99 requests of ~1 ms (1000 µs: bucket floor(log2(1000) * 4) = 39) and one of ~100 ms.
  h[H_HIST + 39] = 99;
  h[H_HIST + Math.floor(Math.log2(100_000) * 4)] = 1;
  const p50 = quantileMs(h, 0.5)!;
  assert.ok(p50 >= 1 && p50 < 1.2, String(p50));
  assert.equal(quantileMs(h, 0.99), p50);
  const p100 = quantileMs(h, 1)!;
  assert.ok(p100 >= 100 && p100 < 120, String(p100));
  assert.equal(quantileMs(newHealth(), 0.5), undefined);
});

function g(requests: number, errors: number, p99Ms?: number): GenerationHealth {
  return {
    requests,
    status: { '2xx': requests - errors, '3xx': 0, '4xx': 0, '5xx': errors },
    threw: 0,
    destroyed: 0,
    uncaught: 0,
    rejections: 0,
    errors,
    errorRate: requests ? errors / requests : 0,
    ...(p99Ms !== undefined ? { p99Ms } : {}),
  };
}
const figs = (current: GenerationHealth, previous: GenerationHealth): WatchFigures => ({
  generation: 2,
  previousGeneration: 1,
  current,
  previous,
  limits: { maxErrorRate: 0.01, maxP99Ratio: 2, minRequests: 20 },
});

test('the verdict: error rate over the previous one plus the limit, p99 over the ratio (floor 1 ms, 100 requests), nothing before min-requests', () => {
  assert.equal(judge(figs(g(19, 19), g(100, 0))), undefined, 'too few requests to judge');
  assert.equal(judge(figs(g(100, 1), g(100, 0))), undefined, '1 % is not more than 0 + 1 %');
  assert.equal(judge(figs(g(100, 2), g(100, 0)))?.figure, 'errorRate');
  assert.equal(judge(figs(g(100, 5), g(100, 5))), undefined, 'no worse than before');
  assert.match(judge(figs(g(100, 2), g(100, 0)))!.reason, /^errorRate 0\.02 > 0\.01 /);
  assert.equal(judge(figs(g(100, 0, 9), g(100, 0, 4)))?.figure, 'p99');
  assert.equal(judge(figs(g(100, 0, 8), g(100, 0, 4))), undefined, 'exactly the ratio is allowed');
  assert.equal(judge(figs(g(100, 0, 1.9), g(100, 0, 0.2))), undefined, 'a previous p99 under 1 ms counts as 1 ms');
  assert.equal(judge(figs(g(100, 0, 2.1), g(100, 0, 0.2)))?.figure, 'p99');
  assert.equal(judge(figs(g(100, 0, 50), g(99, 0, 1))), undefined, 'the previous window had too few requests for a p99');
  assert.equal(judge(figs(g(99, 0, 50), g(100, 0, 1))), undefined, 'a p99 of fewer than 100 requests is not judged');
});

test('--watch DURATION and its thresholds', () => {
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('1500ms'), 1500);
  assert.equal(parseDuration('45'), 45_000);
  assert.equal(parseDuration('soon'), undefined);
  assert.equal(watchFrom({}), undefined);
  assert.deepEqual(watchFrom({ watch: '30s' }), { durationMs: 30_000 });
  assert.deepEqual(watchFrom({ watch: '1m', maxErrorRate: '0.05', maxP99Ratio: '1.5', minRequests: '200' }), {
    durationMs: 60_000,
    maxErrorRate: 0.05,
    maxP99Ratio: 1.5,
    minRequests: 200,
  });
  for (const bad of [
    { watch: '0.5s' },
    { watch: '11m' },
    { maxP99Ratio: '2' },
    { watch: '5s', maxErrorRate: '-1' },
    { watch: '5s', maxP99Ratio: '0.5' },
    { watch: '5s', minRequests: '2.5' },
  ]) {
    assert.throws(
      () => watchFrom(bad),
      (e: { code?: string }) => e.code === 'LP_ERR_CLI_USAGE',
      JSON.stringify(bad),
    );
  }
});
