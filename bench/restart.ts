/**
 * Benchmark — rolling restarts under keep-alive load, three ways, on the same 2-worker cluster app
 * (test/fixtures/cluster, `-r livepatch/register` everywhere):
 *   - livepatch restart: the `restart` op (replacement synced and listening, old worker drained with
 *     `Connection: close` between requests, then disconnected);
 *   - plain cluster:     the app's own SIGHUP rolling restart (fork, wait for listening, disconnect
 *                        the old worker), no agent;
 *   - node --watch:      a rebuilt file restarts the whole process.
 * A closed loop of BENCH_CONNECTIONS keep-alive clients GETs /mix throughout (an error backs off
 * 10 ms so a down server is not hammered). Reported: requests, failed requests, p99 latency and the
 * median time per restart (until the restart op answered / the app logged its reload / it listened again).
 * Usage: node dist/bench/restart.js   (env BENCH_RESTARTS=5, BENCH_CONNECTIONS=8)
 */
import { appendFileSync } from 'node:fs';
import * as http from 'node:http';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { freePort, median, percentile } from '../examples/bench-kit';
import { createProject, createTokens, startApp, type AppProcess } from '../test/helpers/project';

const RESTARTS = Number(process.env['BENCH_RESTARTS'] ?? 5);
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 8);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Sample {
  ok: boolean;
  ms: number;
}

function one(agent: http.Agent, port: number): Promise<Sample> {
  const t = process.hrtime.bigint();
  const done = (ok: boolean): Sample => ({ ok, ms: Number(process.hrtime.bigint() - t) / 1e6 });
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/mix', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(done(res.statusCode === 200)));
      res.on('error', () => resolve(done(false)));
    });
    req.on('error', () => resolve(done(false)));
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
  });
}

function startLoad(port: number): { stop(): Promise<Sample[]> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const samples: Sample[] = [];
  let running = true;
  const loops = Array.from({ length: CONNECTIONS }, async () => {
    while (running) {
      const s = await one(agent, port);
      samples.push(s);
      if (!s.ok) await sleep(10);
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return samples;
    },
  };
}

interface Method {
  name: string;
  run(root: string, port: number): Promise<{ app: AppProcess; restart(): Promise<void>; close(): void }>;
}

const METHODS: Method[] = [
  {
    name: 'livepatch restart',
    async run(root, port) {
      const tokens = createTokens(root);
      const app = await startApp(root, {
        env: { PORT: String(port), LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_AUDIT: join(root, 'audit.jsonl') },
      });
      const client = await AgentClient.connect(app.agent!, { token: tokens.patch });
      return {
        app,
        restart: async () => void (await client.request('restart', { deadlineMs: 5000 }, { timeoutMs: 0 })),
        close: () => client.close(),
      };
    },
  },
  {
    name: 'plain cluster restart',
    async run(root, port) {
      const app = await startApp(root, { env: { PORT: String(port), LIVEPATCH_TOKENS: undefined } });
      return {
        app,
        async restart() {
          const reloaded = app.proc.waitFor('stdout', /cluster reloaded/, { fresh: true, timeoutMs: 30_000 });
          app.child.kill('SIGHUP');
          await reloaded;
        },
        close: () => undefined,
      };
    },
  },
  {
    name: 'node --watch',
    async run(root, port) {
      const app = await startApp(root, { env: { PORT: String(port), LIVEPATCH_TOKENS: undefined }, execArgv: ['--watch'] });
      return {
        app,
        async restart() {
          const listening = app.proc.waitFor('stdout', /app listening on/, { fresh: true, timeoutMs: 30_000 });
          appendFileSync(join(root, 'dist', 'server.js'), '\n// touched\n');
          await listening;
        },
        close: () => undefined,
      };
    },
  },
];

async function measure(m: Method) {
  const project = createProject('cluster');
  const port = await freePort();
  const { app, restart, close } = await m.run(project.root, port);
  try {
    const load = startLoad(port);
    await sleep(1000);
    const times: number[] = [];
    for (let i = 0; i < RESTARTS; i++) {
      const t = Date.now();
      await restart();
      times.push(Date.now() - t);
      await sleep(500);
    }
    await sleep(1000);
    const samples = await load.stop();
    const ok = samples.filter((s) => s.ok).map((s) => s.ms);
    return { name: m.name, requests: samples.length, failed: samples.length - ok.length, p99: percentile(ok, 99), restart: median(times) };
  } finally {
    close();
    await app.stop();
    project.cleanup();
  }
}

async function main(): Promise<void> {
  console.log(`rolling restarts: ${RESTARTS} per method, ${CONNECTIONS} keep-alive clients on /mix, 2 workers`);
  for (const m of METHODS) {
    const o = await measure(m);
    console.log(
      `  ${o.name.padEnd(22)} requests ${String(o.requests).padStart(6)}   failed ${String(o.failed).padStart(5)}   p99 ${o.p99.toFixed(1).padStart(6)} ms   restart ${o.restart.toFixed(0).padStart(5)} ms (median)`,
    );
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
