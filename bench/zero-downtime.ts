/**
 * Benchmark 6 — zero downtime, side by side. The example shop serves a steady paced load (loopback,
 * bounded rate and time) while the same N code changes are delivered three ways:
 *   - livepatch: `apply` over the agent (type check, stage, atomic commit, in-flight requests pinned);
 *   - cluster:   write the new build, then a rolling restart of a 2-worker `node:cluster` (fork a new
 *                worker, wait until it listens, disconnect the old one, one at a time);
 *   - --watch:   write the new build under `node --watch`, which restarts the process.
 * Each change alternates the sample two-module patch (pricing + discounts) with the original sources, so
 * every response shows which code served it. Reported per method: requests, failed requests, p99
 * latency, and the time from the start of a change until the first response from the new code (median
 * over the N changes) and until the last response from the old code. Goal: livepatch 0 failed requests.
 *
 * All three run the same app with the engine preloaded (`-r livepatch/register`; the agent starts only
 * for the livepatch side), so they differ only in how the code is delivered.
 * Usage: node dist/bench/zero-downtime.js   (env BENCH_CHANGES=5, BENCH_RATE=300 requests/s)
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { copyShop, freePort, median, percentile, samplePatch, startLoad, type Sample, type ShopCopy } from '../examples/bench-kit';
import { createDevToken } from '../examples/demo-app';
import { launch, type Launched, type LaunchOptions } from '../testkit/launch';

const CHANGES = Number(process.env['BENCH_CHANGES'] ?? 5);
const RATE = Number(process.env['BENCH_RATE'] ?? 300);
const PATH = '/quote?items=mug:12';
// /quote totals for 12 mugs: deployed code vs the sample patch (see examples/shop/patches).
const TOTAL = { original: '"total":16560', patched: '"total":14688' };

const CLUSTER_PRIMARY = `'use strict';
// Rolling restart on SIGHUP: one worker at a time, the new one listening before the old one leaves.
const cluster = require('node:cluster');
if (cluster.isPrimary) {
  const fork = () => new Promise((resolve) => { const w = cluster.fork(); w.once('listening', () => resolve(w)); });
  (async () => { await fork(); await fork(); console.log('cluster ready'); })();
  let busy = false;
  process.on('SIGHUP', async () => {
    if (busy) return;
    busy = true;
    for (const old of Object.values(cluster.workers)) {
      await fork();
      await new Promise((resolve) => { old.once('exit', resolve); old.disconnect(); setTimeout(() => old.kill(), 10000).unref(); });
    }
    busy = false;
    console.log('cluster reloaded');
  });
  process.on('SIGTERM', () => { for (const w of Object.values(cluster.workers)) w.kill(); process.exit(0); });
} else {
  require('./dist/main.js');
}
`;

interface Method {
  name: string;
  start(copy: ShopCopy, port: number): Promise<{ shop: Launched; deliver(files: Record<string, string>): Promise<void> }>;
}

const METHODS: Method[] = [
  {
    name: 'livepatch apply',
    async start(copy, port) {
      const { tokensFile, token } = createDevToken(copy.root);
      const shop = await startShop(
        copy,
        ['-r', 'livepatch/register', 'dist/main.js'],
        {
          PORT: String(port),
          LIVEPATCH_TOKENS: tokensFile,
          LIVEPATCH_LISTEN: '127.0.0.1:0',
          LIVEPATCH_AUDIT: join(copy.root, 'audit.jsonl'),
        },
        [
          { stream: 'stderr', pattern: /livepatch: agent listening on (\S+)/ },
          { stream: 'stdout', pattern: /app listening on/ },
        ],
      );
      const client = await AgentClient.connect(shop.ready[0]![1]!, { token }).catch(async (e: unknown) => {
        await shop.stop();
        throw e;
      });
      void shop.exited.then(() => client.close());
      return {
        shop,
        async deliver(files) {
          await client.request('apply', { patch: { files } }, { timeoutMs: 60_000 });
        },
      };
    },
  },
  {
    name: 'cluster rolling restart',
    async start(copy, port) {
      writeFileSync(join(copy.root, 'cluster.js'), CLUSTER_PRIMARY);
      const shop = await startShop(copy, ['-r', 'livepatch/register', 'cluster.js'], { PORT: String(port) }, [
        { stream: 'stdout', pattern: /cluster ready/ },
      ]);
      return {
        shop,
        async deliver(files) {
          deployAll(copy, files);
          const reloaded = shop.waitFor('stdout', /cluster reloaded/, { fresh: true, timeoutMs: 60_000 });
          shop.child.kill('SIGHUP');
          await reloaded;
        },
      };
    },
  },
  {
    name: 'node --watch restart',
    async start(copy, port) {
      const shop = await startShop(copy, ['--watch', '-r', 'livepatch/register', 'dist/main.js'], { PORT: String(port) }, [
        { stream: 'stdout', pattern: /app listening on/ },
      ]);
      return {
        shop,
        async deliver(files) {
          const restarted = shop.waitFor('stdout', /app listening on/, { fresh: true, timeoutMs: 60_000 });
          deployAll(copy, files);
          await restarted;
        },
      };
    },
  },
];

/** The shop copy run with `args`; resolves once the `ready` lines have appeared (a failed start leaves nothing running). */
function startShop(copy: ShopCopy, args: string[], env: Record<string, string>, ready: LaunchOptions['ready']): Promise<Launched> {
  return launch({
    args,
    cwd: copy.root,
    env: { LIVEPATCH_ROOT: copy.root, LIVEPATCH_TOKENS: undefined, ...env },
    name: 'shop',
    group: true,
    killAfterMs: 5000,
    ...(ready ? { ready } : {}),
  });
}

function deployAll(copy: ShopCopy, files: Record<string, string>): void {
  for (const [id, source] of Object.entries(files)) copy.deploy(id.replace(/^src\//, ''), source);
}

interface Outcome {
  name: string;
  requests: number;
  failed: number;
  p99: number;
  firstNew: number[];
  lastOld: number[];
}

async function runMethod(m: Method): Promise<Outcome> {
  const copy = copyShop();
  const port = await freePort();
  let started: Awaited<ReturnType<Method['start']>>;
  try {
    started = await m.start(copy, port);
  } catch (e) {
    copy.cleanup();
    throw e;
  }
  const { shop, deliver } = started;
  const { patched, original } = samplePatch();
  const load = startLoad(port, PATH, RATE);
  const firstNew: number[] = [];
  const lastOld: number[] = [];
  try {
    await sleep(1500);
    for (let k = 1; k <= CHANGES; k++) {
      const toPatched = k % 2 === 1;
      const [oldMark, newMark] = toPatched ? [TOTAL.original, TOTAL.patched] : [TOTAL.patched, TOTAL.original];
      const t0 = performance.now();
      await deliver(toPatched ? patched : original);
      // Let the load run on the new code for a while before the next change.
      await sleep(1500);
      const after = load.samples.filter((s) => s.start >= t0 && s.ok);
      const end = (s: Sample) => s.start + s.ms - t0;
      const fresh = after.filter((s) => s.body!.includes(newMark)).map(end);
      const stale = after.filter((s) => s.body!.includes(oldMark)).map(end);
      if (fresh.length === 0) throw new Error(`${m.name}: change ${k} never served new code`);
      firstNew.push(Math.min(...fresh));
      lastOld.push(stale.length ? Math.max(...stale) : 0);
    }
  } finally {
    await load.stop();
    await shop.stop();
    copy.cleanup();
  }
  const samples = load.samples;
  const ok = samples.filter((s) => s.ok).map((s) => s.ms);
  return { name: m.name, requests: samples.length, failed: samples.length - ok.length, p99: percentile(ok, 99), firstNew, lastOld };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  console.log(`zero downtime: GET ${PATH} at ${RATE} req/s (keep-alive, ≤64 open), ${CHANGES} two-module code changes per method`);
  const only = process.argv[2];
  const outcomes: Outcome[] = [];
  for (const m of METHODS.filter((x) => !only || x.name.includes(only))) {
    const o = await runMethod(m);
    outcomes.push(o);
    console.log(
      `  ${o.name.padEnd(24)} requests ${String(o.requests).padStart(5)}   failed ${String(o.failed).padStart(4)}   p99 ${o.p99.toFixed(1).padStart(6)} ms   new code after ${median(o.firstNew).toFixed(0).padStart(5)} ms (median)   old code until ${median(o.lastOld).toFixed(0).padStart(5)} ms`,
    );
  }
  const lp = outcomes.find((o) => o.name.startsWith('livepatch'));
  if (lp) console.log(`goal: livepatch 0 failed requests → ${lp.failed === 0 ? 'met' : `NOT met (${lp.failed})`}`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
