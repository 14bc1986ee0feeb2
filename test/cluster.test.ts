/**
 * Cluster mode against a real `cluster` app (a primary and two workers, all real processes): a
 * two-module patch reaches every worker atomically under load, a patch that fails to stage in one
 * worker commits nowhere, a respawned worker serves the current generation from its first request,
 * and status shows each worker.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AgentClient } from '../client/connection';
import { LivepatchError } from '../shared';
import { runCli } from './helpers/project';
import { readAudit } from './helpers/raw-client';
import { bootCluster, get, load, pairPatch, quoteSource, ratesSource, type ClusterApp } from './cluster-fixture';
import * as http from 'node:http';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('cluster mode (node cluster, agent in the primary)', () => {
  let c: ClusterApp;
  let client: AgentClient;
  before(async () => {
    c = await bootCluster(2);
    client = await AgentClient.connect(c.address, { token: c.tokens.patch });
  });
  after(async () => {
    client?.close();
    await c?.stop();
  });

  it('only the primary runs an agent; status lists both workers at generation 1', async () => {
    assert.equal(c.app.stderr().match(/agent listening on/g)?.length, 1, c.app.stderr());
    const s = await client.request('status', {});
    assert.equal(s.currentGeneration, 1);
    assert.equal(s.workers?.length, 2);
    for (const w of s.workers!) {
      assert.equal(w.generation, 1);
      assert.equal(w.lagging, false);
      assert.notEqual(w.pid, s.pid);
    }
    assert.ok(/worker 1 ready/.test(c.app.stdout()) && /worker 2 ready/.test(c.app.stdout()), 'the app IPC still works');
    const cli = await runCli(['status', c.address], { env: { LIVEPATCH_TOKEN: c.tokens.read } });
    assert.equal(cli.code, 0, cli.stderr);
    for (const w of s.workers!) assert.match(cli.stdout, new RegExp(`^${w.id}\\s+${w.pid}\\s+1\\s+1\\s+no\\s*$`, 'm'), cli.stdout);
  });

  it('a two-module patch reaches all workers atomically under load', async () => {
    const l = load(c.app.httpPort, '/mix', 8);
    await sleep(300);
    const r = await client.request('apply', { patch: pairPatch('A2', 'B2', 'pair-2') });
    const afterApply = await Promise.all(Array.from({ length: 20 }, () => get(new http.Agent(), c.app.httpPort, '/mix')));
    await sleep(200);
    const results = await l.stop();
    assert.equal(r.generation, 2);
    assert.deepEqual(
      r.workers?.map((w) => [w.outcome, w.generation]),
      [
        ['committed', 2],
        ['committed', 2],
      ],
    );
    const errors = results.filter((x) => x.error);
    assert.deepEqual(errors, []);
    const mixed = results.filter((x) => !((x.a === 'A1' && x.b === 'B1') || (x.a === 'A2' && x.b === 'B2')));
    assert.deepEqual(mixed, [], 'no response mixes versions');
    assert.ok(results.some((x) => x.a === 'A1') && results.some((x) => x.a === 'A2'), 'load spanned the commit');
    // Once apply answered, no worker lags behind.
    assert.deepEqual([...new Set(afterApply.map((x) => `${x.a}/${x.b}`))], ['A2/B2']);
    assert.equal(new Set(afterApply.map((x) => x.worker)).size, 2, 'both workers answered');
    const s = await client.request('status', {});
    assert.deepEqual(
      s.workers?.map((w) => [w.generation, w.lagging]),
      [
        [2, false],
        [2, false],
      ],
    );
    const applied = () => readAudit(c.auditFile).find((a) => a.op === 'apply' && a.patchId === 'pair-2');
    for (let i = 0; i < 100 && !applied(); i++) await sleep(20);
    assert.match(applied()?.detail, /worker 1 \(pid \d+\) committed g2, worker 2 \(pid \d+\) committed g2/);
  });

  it('a patch that fails to stage in one worker commits nowhere', async () => {
    const top = `import cluster from 'node:cluster';\nconst refuse = (): void => {\n  if (cluster.worker?.id === 2) throw new Error('only worker 2 refuses');\n};\nexport const checked = refuse();\n`;
    const err = await client
      .request('apply', { patch: { files: { 'src/rates.ts': ratesSource('A3', top), 'src/quote.ts': quoteSource('B3') } } })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(err instanceof LivepatchError, String(err));
    assert.equal(err.code, 'LP_ERR_PATCH_LOAD');
    assert.match(err.message, /worker 2 .*only worker 2 refuses/);
    const outcomes = (err.details as { workers: { id: number; outcome: string }[] }).workers;
    assert.deepEqual(
      outcomes.map((w) => [w.id, w.outcome]),
      [
        [1, 'discarded'],
        [2, 'failed'],
      ],
    );
    // The audit record is written just after the reply.
    const refused = () => readAudit(c.auditFile).find((a) => a.op === 'apply' && a.outcome === 'LP_ERR_PATCH_LOAD');
    for (let i = 0; i < 100 && !refused(); i++) await sleep(20);
    assert.match(refused()?.detail, /^worker 1 \(pid \d+\) discarded, worker 2 \(pid \d+\) failed$/);
    const seen = await Promise.all(Array.from({ length: 20 }, () => get(new http.Agent(), c.app.httpPort, '/mix')));
    assert.deepEqual([...new Set(seen.map((x) => `${x.a}/${x.b}`))], ['A2/B2']);
    const s = await client.request('status', {});
    assert.equal(s.currentGeneration, 2);
    assert.deepEqual(
      s.workers?.map((w) => w.generation),
      [2, 2],
    );
  });

  it('a killed worker is respawned at the current generation from its first request', async () => {
    const before = (await client.request('status', {})).workers!;
    process.kill(before[0]!.pid, 'SIGKILL');
    // Wait until the primary saw the exit (a connection handed to a dying worker is lost by node itself).
    let s = await client.request('status', {});
    for (let i = 0; i < 100 && s.workers?.some((w) => w.pid === before[0]!.pid); i++) {
      await sleep(20);
      s = await client.request('status', {});
    }
    // New connections (no keep-alive) so the primary hands some to the replacement as soon as it listens;
    // the replacement holds them until it is synced: every response is A2/B2.
    const l = load(c.app.httpPort, '/mix', 4, false);
    // Status answers at once, so a worker still syncing shows as lagging (generation 1) for a moment.
    for (let i = 0; i < 200 && !(s.workers?.length === 2 && s.workers.every((w) => !w.lagging)); i++) {
      await sleep(20);
      s = await client.request('status', {});
    }
    await sleep(300);
    const results = await l.stop();
    assert.equal(s.workers?.length, 2);
    const fresh = s.workers!.find((w) => w.pid !== before[1]!.pid)!;
    assert.ok(!before.some((b) => b.pid === fresh.pid), 'a new worker');
    assert.equal(fresh.generation, 2);
    const byFresh = results.filter((x) => x.pid === fresh.pid);
    assert.ok(byFresh.length > 0, 'the new worker served');
    assert.deepEqual([...new Set(byFresh.map((x) => `${x.a}/${x.b}`))], ['A2/B2'], 'never the deployed code');
    assert.deepEqual(
      results.filter((x) => x.error),
      [],
      'the old worker was killed before the load started',
    );
  });

  it('rollback fans out to every worker', async () => {
    const r = await client.request('rollback', {});
    assert.equal(r.generation, 3);
    assert.deepEqual(
      r.workers?.map((w) => w.generation),
      [3, 3],
    );
    const seen = await Promise.all(Array.from({ length: 20 }, () => get(new http.Agent(), c.app.httpPort, '/mix')));
    assert.deepEqual([...new Set(seen.map((x) => `${x.a}/${x.b}`))], ['A1/B1']);
    const v = await client.request('versions', {});
    assert.deepEqual(
      v.filter((x) => x.patched),
      [],
      'back to the deployed versions',
    );
    const h = await client.request('history', {});
    assert.deepEqual(
      h.generations.map((g) => g.kind),
      ['deploy', 'patch', 'rollback'],
    );
  });

  it('a worker that dies while staging fails the patch everywhere; its replacement is in step', async () => {
    const before = (await client.request('status', {})).workers!;
    const victim = Math.max(...before.map((w) => w.id));
    // Killed from outside: staged code cannot exit its own process (process.exit throws LP_ERR_PATCH_EFFECT).
    const top = `import cluster from 'node:cluster';\nimport { execFileSync } from 'node:child_process';\nconst die = (): void => {\n  if (cluster.worker?.id === ${victim}) execFileSync('kill', ['-9', String(process.pid)]);\n};\nexport const died = die();\n`;
    const err = await client.request('apply', { patch: { files: { 'src/rates.ts': ratesSource('A5', top) } } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof LivepatchError, String(err));
    assert.equal(err.code, 'LP_ERR_CLUSTER_WORKER');
    const outcomes = (err.details as { workers: { id: number; outcome: string }[] }).workers;
    assert.deepEqual(outcomes.map((w) => w.outcome).sort(), ['discarded', 'exited']);
    let s = await client.request('status', {});
    for (let i = 0; i < 200 && !(s.workers?.length === 2 && s.workers.every((w) => w.generation === 3)); i++) {
      await sleep(25);
      s = await client.request('status', {});
    }
    assert.equal(s.currentGeneration, 3);
    assert.deepEqual(
      s.workers?.map((w) => [w.generation, w.lagging]),
      [
        [3, false],
        [3, false],
      ],
    );
    const seen = await Promise.all(Array.from({ length: 20 }, () => get(new http.Agent(), c.app.httpPort, '/mix')));
    assert.deepEqual([...new Set(seen.map((x) => x.a))], ['A1']);
  });

  it('a worker that dies between stage and commit: the others commit, its replacement joins at the new generation', async () => {
    const staged = await client.request('stage', { patch: pairPatch('A6', 'B6') });
    const before = (await client.request('status', {})).workers!;
    process.kill(before[0]!.pid, 'SIGKILL');
    let s = await client.request('status', {});
    for (
      let i = 0;
      i < 200 &&
      !(s.workers?.length === 2 && !s.workers.some((w) => w.pid === before[0]!.pid) && s.workers.every((w) => w.generation === 3));
      i++
    ) {
      await sleep(25);
      s = await client.request('status', {});
    }
    const r = await client.request('commit', { stageId: staged.stageId });
    assert.equal(r.generation, 4);
    assert.deepEqual(
      r.workers?.map((w) => [w.outcome, w.generation]),
      [
        ['committed', 4],
        ['committed', 4],
      ],
    );
    const seen = await Promise.all(Array.from({ length: 20 }, () => get(new http.Agent(), c.app.httpPort, '/mix')));
    assert.deepEqual([...new Set(seen.map((x) => `${x.a}/${x.b}`))], ['A6/B6']);
    assert.equal(new Set(seen.map((x) => x.pid)).size, 2);
  });
});
