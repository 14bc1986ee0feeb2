/**
 * Latency sampling on a busy server, through the real surfaces: a real agent app under a burst of
 * keep-alive requests well above the rate at which every request is timed. Every request is still
 * counted in its generation's health (requests, status class), and `status --json` still gives its
 * latency quantiles (from the timed sample, each weighing its stride).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { bootAgentApp, type AgentApp } from './helpers/raw-client';
import { runCli } from './helpers/project';

let a: AgentApp;

before(async () => {
  a = await bootAgentApp({}, { fixture: 'health' });
});

after(async () => {
  await a?.stop();
});

/** `n` GET requests over `connections` keep-alive connections; resolves with the count of 200s. */
async function burst(port: number, n: number, connections: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  let sent = 0;
  let ok = 0;
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/price?n=5', agent }, (res) => {
        if (res.statusCode === 200) ok++;
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
  const worker = async (): Promise<void> => {
    while (sent < n) {
      sent++;
      await one();
    }
  };
  try {
    await Promise.all(Array.from({ length: connections }, worker));
  } finally {
    agent.destroy();
  }
  return ok;
}

test('above ~1000 requests a second every request is still counted and the quantiles are still given', async () => {
  const status = async () => {
    const r = await runCli(['status', a.address, '--json'], { cwd: a.project.root, env: { LIVEPATCH_TOKEN: a.tokens.read } });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).liveGenerations.find((g: { current: boolean }) => g.current).health;
  };
  const before = await status();
  // 20,000 requests: the stride is retuned every 4,096, so most of them are served at a stride above 1
  // on any machine that serves more than ~2,000 requests a second.
  const n = 20_000;
  const t0 = Date.now();
  const ok = await burst(a.app.httpPort, n, 16);
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(ok, n);
  const h = await status();
  assert.equal(h.requests - before.requests, n, `every request counted (${(n / seconds).toFixed(0)} requests/s)`);
  assert.equal(h.status['2xx'] - before.status['2xx'], n);
  assert.equal(typeof h.p50Ms, 'number');
  assert.equal(typeof h.p99Ms, 'number');
  assert.ok(h.p50Ms > 0 && h.p50Ms <= h.p99Ms && h.p99Ms < 10_000, JSON.stringify(h));
});
