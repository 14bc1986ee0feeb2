/**
 * `livepatch restart` against a real cluster under keep-alive load: ten rolling restarts, zero failed
 * requests, every response from the patched generation (the replacements start at the current
 * generation), and finally none of the original workers left. Also: a plain agent refuses restart.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentClient } from '../client/connection';
import { runCli } from './helpers/project';
import { bootCluster, load, pairPatch, type ClusterApp } from './cluster-fixture';
import { readAudit } from './helpers/raw-client';

const RESTARTS = Number(process.env.CLUSTER_RESTARTS ?? 10);

let c: ClusterApp;

before(async () => {
  c = await bootCluster(2);
});

after(async () => {
  await c?.stop();
});

test(`${RESTARTS} rolling restarts under keep-alive load: zero failed requests, patch kept`, async () => {
  const client = await AgentClient.connect(c.address, { token: c.tokens.patch });
  const original = (await client.request('status', {})).workers!.map((w) => w.pid);
  await client.request('apply', { patch: pairPatch('A2', 'B2', 'before-restarts') });
  const l = load(c.app.httpPort, '/mix', 8, true);
  const env = { LIVEPATCH_TOKEN: c.tokens.patch };
  let results: any[];
  try {
    for (let i = 0; i < RESTARTS; i++) {
      const r = await runCli(['restart', c.address, '--deadline', '5000', '--json'], { env });
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const j = JSON.parse(r.stdout);
      assert.equal(j.replaced.length, 2);
      for (const x of j.replaced) {
        assert.equal(x.new.generation, 2);
        assert.equal(x.ended, 'exited', 'the old worker drained before the deadline');
      }
    }
  } finally {
    results = await l.stop();
  }
  assert.deepEqual(
    results.filter((x) => x.error),
    [],
    'no failed request',
  );
  assert.ok(results.length > 100, `load ran (${results.length} responses)`);
  assert.deepEqual([...new Set(results.map((x) => `${x.a}/${x.b}`))], ['A2/B2'], 'every response from the patched generation');
  assert.ok(new Set(results.map((x) => x.pid)).size >= 2 * RESTARTS, 'responses came from the replacements');
  const s = await client.request('status', {});
  assert.equal(s.workers?.length, 2);
  for (const w of s.workers!) {
    assert.ok(!original.includes(w.pid));
    assert.deepEqual([w.generation, w.lagging], [2, false]);
  }
  client.close();
  const restarts = () => readAudit(c.auditFile).filter((a) => a.op === 'restart');
  for (let i = 0; i < 100 && restarts().length < RESTARTS; i++) await new Promise((r) => setTimeout(r, 20));
  const rec = restarts();
  assert.equal(rec.length, RESTARTS);
  assert.match(rec[0].detail, /worker 1 \(pid \d+\) → 3 \(pid \d+\) g2, old exited/);
});

test('restart on a single-process agent is a usage error', async () => {
  const { bootAgentApp } = await import('./helpers/raw-client');
  const a = await bootAgentApp();
  try {
    const r = await runCli(['restart', a.address], { env: { LIVEPATCH_TOKEN: a.tokens.patch } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /not a cluster primary/);
  } finally {
    await a.stop();
  }
});
