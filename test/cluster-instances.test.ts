/**
 * The process-manager recipe (pm2 owns the primary): every app instance runs its own agent on
 * `LIVEPATCH_LISTEN=127.0.0.1:BASE+` (port BASE + NODE_APP_INSTANCE), and the CLI's multi-agent
 * apply patches all of them two-phase. Real processes: a cluster whose workers are numbered the way
 * pm2 numbers them, the primary running no agent.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { hasInstancePattern, instanceEnv } from '../server/cluster/instance';
import { runCli } from './helpers/project';
import { readAudit } from './helpers/raw-client';
import { bootCluster, get, quoteSource, ratesSource, type ClusterApp } from './cluster-fixture';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function freeBase(): Promise<number> {
  for (;;) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    if ((await portFree(base)) && (await portFree(base + 1))) return base;
  }
}

let c: ClusterApp;
let base: number;

before(async () => {
  base = await freeBase();
  c = await bootCluster(2, {
    PM2_LIKE: '1',
    LIVEPATCH_LISTEN: `127.0.0.1:${base}+`,
    LIVEPATCH_AUDIT: '$ROOT/audit-{instance}.jsonl',
    LIVEPATCH_JOURNAL: '$ROOT/journal-{instance}',
  });
  for (let i = 0; i < 200 && (c.app.stderr().match(/agent listening on/g)?.length ?? 0) < 2; i++) await sleep(25);
});

after(async () => {
  await c?.stop();
});

test('per-instance patterns: HOST:PORT+, {instance}, NODE_APP_INSTANCE then pm_id', () => {
  assert.equal(instanceEnv({ LIVEPATCH_LISTEN: '127.0.0.1:12400+', NODE_APP_INSTANCE: '3' })['LIVEPATCH_LISTEN'], '127.0.0.1:12403');
  const e = instanceEnv({
    LIVEPATCH_LISTEN: 'unix:/run/lp-{instance}.sock',
    LIVEPATCH_AUDIT: '/log/a-{instance}.jsonl',
    LIVEPATCH_JOURNAL: '/j/{instance}',
    pm_id: '7',
  });
  assert.deepEqual(
    [e['LIVEPATCH_LISTEN'], e['LIVEPATCH_AUDIT'], e['LIVEPATCH_JOURNAL']],
    ['unix:/run/lp-7.sock', '/log/a-7.jsonl', '/j/7'],
  );
  const plain = { LIVEPATCH_LISTEN: '127.0.0.1:12345', NODE_APP_INSTANCE: '2' };
  assert.equal(instanceEnv(plain), plain, 'no pattern: unchanged');
  assert.equal(hasInstancePattern('127.0.0.1:12345'), false);
  assert.equal(hasInstancePattern('[::1]:12400+'), true);
  assert.throws(() => instanceEnv({ LIVEPATCH_LISTEN: '127.0.0.1:65535+', NODE_APP_INSTANCE: '1' }), /out of range/);
});

test('each instance listens on BASE + NODE_APP_INSTANCE and the primary runs no agent', () => {
  const addrs = [...c.app.stderr().matchAll(/agent listening on (\S+)/g)].map((m) => m[1]).sort();
  assert.deepEqual(addrs, [`127.0.0.1:${base}`, `127.0.0.1:${base + 1}`]);
});

test('a cluster started without tokens serves at once: workers do not wait for a primary agent', async () => {
  const plain = await bootCluster(2, { LIVEPATCH_TOKENS: undefined }, false);
  try {
    const seen = await Promise.all(Array.from({ length: 4 }, () => get(new http.Agent(), plain.app.httpPort, '/mix')));
    assert.deepEqual(
      seen.map((x) => x.a),
      ['A1', 'A1', 'A1', 'A1'],
      JSON.stringify(seen),
    );
    assert.match(plain.app.stderr(), /LIVEPATCH_TOKENS is not set/);
  } finally {
    await plain.stop();
  }
});

test('a cluster whose agent cannot start still serves at once: the workers are answered', async () => {
  const bad = await bootCluster(2, { LIVEPATCH_MAX_PAYLOAD: 'lots' }, false);
  try {
    const seen = await Promise.all(Array.from({ length: 4 }, () => get(new http.Agent(), bad.app.httpPort, '/mix')));
    assert.deepEqual(
      seen.map((x) => x.a),
      ['A1', 'A1', 'A1', 'A1'],
      JSON.stringify(seen),
    );
    assert.match(bad.app.stderr(), /agent not started: invalid LIVEPATCH_MAX_PAYLOAD/);
  } finally {
    await bad.stop();
  }
});

test('livepatch apply h1,h2 patches every instance', async () => {
  const hosts = `127.0.0.1:${base},127.0.0.1:${base + 1}`;
  c.project.write('fix/src/rates.ts', ratesSource('A9'));
  c.project.write('fix/src/quote.ts', quoteSource('B9'));
  const env = { LIVEPATCH_TOKEN: c.tokens.patch };
  const r = await runCli(['apply', hosts, 'fix/src/rates.ts', 'fix/src/quote.ts', '--root', 'fix', '--json'], { cwd: c.project.root, env });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const j = JSON.parse(r.stdout);
  assert.equal(j.committed, true);
  for (const port of [base, base + 1]) {
    const s = await runCli(['status', `127.0.0.1:${port}`, '--json'], { env });
    assert.equal(JSON.parse(s.stdout).currentGeneration, 2);
  }
  const seen = await Promise.all(Array.from({ length: 20 }, () => get(new http.Agent(), c.app.httpPort, '/mix')));
  assert.deepEqual([...new Set(seen.map((x) => `${x.a}/${x.b}`))], ['A9/B9']);
  assert.equal(new Set(seen.map((x) => x.pid)).size, 2, 'both instances answered');
  // Each instance keeps its own audit chain and journal (a shared file would interleave two chains).
  for (const n of [0, 1]) {
    assert.ok(
      readAudit(join(c.project.root, `audit-${n}.jsonl`)).some((a) => a.op === 'commit' && a.outcome === 'ok'),
      `audit of instance ${n}`,
    );
    assert.ok(existsSync(join(c.project.root, `journal-${n}`)), `journal of instance ${n}`);
  }
});
