/**
 * Pre-authentication attacks on the agent in the example shop, on loopback only, while a paced HTTP
 * load runs against the shop: protocol junk, silent sockets held open and reopened, wrong proofs from
 * rotating source addresses (127.0.2.0/24), half-sent upgrade requests (slowloris) and 8 MiB frames
 * before authentication. Each attack runs for a bounded time with a bounded number of attacker
 * connections; during each, an operator logs in (connect + handshake + `status`) once a second from
 * 127.0.0.1, and the host's RSS and open file descriptors are sampled. Prints, per attack: attacker
 * connections, operator logins and their times, the host's RSS before and at its peak and its peak
 * file descriptors, and the shop's HTTP requests and failures; then the audit log's size. Each attack
 * runs in a child process of its own, so the operator's client and the load generator here keep
 * their own event loop (the machine's cores are still shared).
 *
 * Usage: node dist/bench/attack.js   (env BENCH_ATTACK_SECONDS=10, BENCH_RATE=200 requests/s,
 * BENCH_MAX_ATTACK_CONNECTIONS=100000 per attack, BENCH_ATTACKS=junk,silent,proofs,slowloris,frames)
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { copyShop, freePort, median, startLoad } from '../examples/bench-kit';
import { createDevToken } from '../examples/demo-app';
import { PROTOCOL_VERSION } from '../shared/version';
import { openRaw } from '../test/helpers/raw-client';
import { launch, run, type Launched } from '../testkit/launch';

const SECONDS = Number(process.env['BENCH_ATTACK_SECONDS'] ?? 10);
const RATE = Number(process.env['BENCH_RATE'] ?? 200);
const MAX_CONNECTIONS = Number(process.env['BENCH_MAX_ATTACK_CONNECTIONS'] ?? 100_000);
const PATH = '/quote?items=mug:12';
/** Run only these attacks (comma-separated ids: junk, silent, proofs, slowloris, frames). */
const ONLY = process.env['BENCH_ATTACKS']?.split(',').map((x) => x.trim());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function fdsOf(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** One attack: `workers` loops, each repeating `step` until the deadline or the connection budget is spent. */
interface Attack {
  /** Short name for BENCH_ATTACKS. */
  id: string;
  name: string;
  workers: number;
  step(worker: number, n: number): Promise<void>;
}

const junkFrame = 'GET / not a livepatch frame';
const BIG = 'x'.repeat(8 * 1024 * 1024 - 4096);

function attacks(address: string): Attack[] {
  const [host, portText] = address.split(':') as [string, string];
  const port = Number(portText);
  /** A WebSocket attacker step: open, wait for hello, do `act`, wait until the agent closes it. */
  const ws = async (act: (c: Awaited<ReturnType<typeof openRaw>>) => void, localAddress?: string) => {
    try {
      const c = await openRaw(address, { ...(localAddress ? { localAddress } : {}), maxPayload: 1 << 20 });
      await c.next((m) => m.type === 'hello', 5000).catch(() => undefined);
      act(c);
      await Promise.race([c.closed, sleep(10_000)]);
      c.close();
    } catch {
      await sleep(5);
    }
  };
  return [
    { id: 'junk', name: 'protocol junk (8 loops)', workers: 8, step: () => ws((c) => c.send(junkFrame)) },
    { id: 'silent', name: 'silent sockets (40 held, reopened when closed)', workers: 40, step: () => ws(() => undefined) },
    {
      id: 'proofs',
      name: 'wrong proofs from rotating addresses 127.0.2.0/24 (8 loops)',
      workers: 8,
      step: (w, n) =>
        ws(
          (c) =>
            c.send(
              JSON.stringify({
                type: 'auth',
                protocol: PROTOCOL_VERSION,
                tokenId: randomBytes(4).toString('hex'),
                clientNonce: randomBytes(18).toString('base64url'),
                proof: randomBytes(32).toString('base64url'),
              }),
            ),
          `127.0.2.${((w * 31 + n) % 254) + 1}`,
        ),
    },
    {
      id: 'slowloris',
      name: 'half-sent upgrade requests (1000 held, reopened when dropped)',
      workers: 1000,
      step: () =>
        new Promise<void>((resolve) => {
          const s = connect({ host, port });
          s.on('error', () => undefined);
          s.once('connect', () => s.write('GET /livepatch HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'));
          s.once('close', () => setTimeout(resolve, 5));
          setTimeout(() => s.destroy(), 10_000).unref();
        }),
    },
    { id: 'frames', name: '8 MiB frames before auth (30 loops)', workers: 30, step: () => ws((c) => c.send(BIG)) },
  ];
}

interface Row {
  attack: string;
  connections: number;
  logins: number[];
  loginFailures: string[];
  startRss: number;
  peakRss: number;
  peakFds: number;
  requests: number;
  failed: number;
}

async function operatorLogin(address: string, token: string): Promise<number> {
  const t0 = performance.now();
  const c = await AgentClient.connect(address, { token, timeoutMs: 5000 });
  try {
    await c.request('status', {}, { timeoutMs: 5000 });
  } finally {
    c.close();
  }
  return performance.now() - t0;
}

/** Child process: run attack number `index` against `address` for SECONDS; print the connections made. */
async function runAttacker(index: number, address: string): Promise<void> {
  const attack = attacks(address)[index]!;
  const deadline = performance.now() + SECONDS * 1000;
  let connections = 0;
  // The attack ends at the deadline: sockets still open then are simply dropped with the process.
  setTimeout(() => {
    process.stdout.write(`connections ${connections}\n`);
    process.exit(0);
  }, SECONDS * 1000);
  await Promise.all(
    Array.from({ length: attack.workers }, async (_, w) => {
      for (let n = 0; performance.now() < deadline && connections < MAX_CONNECTIONS; n++) {
        connections++;
        await attack.step(w, n);
      }
    }),
  );
}

async function phase(
  name: string,
  index: number | undefined,
  ctx: { pid: number; address: string; token: string; httpPort: number },
): Promise<Row> {
  const load = startLoad(ctx.httpPort, PATH, RATE);
  const deadline = performance.now() + SECONDS * 1000;
  let connections = 0;
  const attacker =
    index === undefined
      ? undefined
      : run({ args: [__filename, '--attack', String(index), ctx.address], timeoutMs: SECONDS * 1000 + 60_000 }).then((r) => {
          connections = Number(/connections (\d+)/.exec(r.stdout)?.[1] ?? NaN);
          if (r.code !== 0) throw new Error(`attacker ${name} exited with ${r.code}\n${r.stderr}`);
        });
  const row: Row = {
    attack: name,
    connections: 0,
    logins: [],
    loginFailures: [],
    startRss: rssOf(ctx.pid),
    peakRss: 0,
    peakFds: 0,
    requests: 0,
    failed: 0,
  };
  const sampler = setInterval(() => {
    row.peakRss = Math.max(row.peakRss, rssOf(ctx.pid));
    row.peakFds = Math.max(row.peakFds, fdsOf(ctx.pid));
  }, 100);
  await sleep(500); // let the attack build up
  while (performance.now() < deadline - 500) {
    const started = performance.now();
    try {
      row.logins.push(await operatorLogin(ctx.address, ctx.token));
    } catch (e) {
      row.loginFailures.push((e as { code?: string }).code ?? String(e));
    }
    await sleep(Math.max(0, 1000 - (performance.now() - started)));
  }
  await attacker;
  clearInterval(sampler);
  const samples = await load.stop();
  row.connections = connections;
  row.requests = samples.length;
  row.failed = samples.filter((s) => !s.ok).length;
  return row;
}

async function main(): Promise<void> {
  const copy = copyShop();
  let shop: Launched | undefined;
  try {
    const { tokensFile, token } = createDevToken(copy.root);
    const audit = join(copy.root, 'audit.jsonl');
    const httpPort = await freePort();
    shop = await launch({
      args: ['-r', 'livepatch/register', 'dist/main.js'],
      cwd: copy.root,
      env: {
        PORT: String(httpPort),
        LIVEPATCH_ROOT: copy.root,
        LIVEPATCH_TOKENS: tokensFile,
        LIVEPATCH_LISTEN: '127.0.0.1:0',
        LIVEPATCH_AUDIT: audit,
      },
      name: 'shop',
      killAfterMs: 5000,
      ready: [
        { stream: 'stderr', pattern: /livepatch: agent listening on (\S+)/ },
        { stream: 'stdout', pattern: /app listening on/ },
      ],
    });
    const address = shop.ready[0]![1]!;
    if (!address.startsWith('127.')) throw new Error(`refusing to attack a non-loopback address ${address}`);
    const ctx = { pid: shop.pid, address, token, httpPort };
    console.log(
      `shop pid ${ctx.pid}, agent ${address}, ${SECONDS} s per attack, HTTP load ${RATE} req/s on ${PATH}, Node ${process.version}`,
    );
    const rows: Row[] = [await phase('none (baseline)', undefined, ctx)];
    for (const [i, a] of attacks(address).entries()) {
      if (ONLY && !ONLY.includes(a.id)) continue;
      rows.push(await phase(a.name, i, ctx));
      await sleep(3500); // let the agent's deadlines clear the previous attack's sockets
    }
    const mib = (b: number) => (b / 1048576).toFixed(0);
    console.log(
      '\n| Attack | Attacker connections | Operator logins ok | Login median / max (ms) | Host RSS before → peak (MiB) | Host peak fds | HTTP requests / failed |',
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const r of rows) {
      const ok = `${r.logins.length}/${r.logins.length + r.loginFailures.length}${r.loginFailures.length ? ` (${[...new Set(r.loginFailures)].join(', ')})` : ''}`;
      const times = r.logins.length ? `${median(r.logins).toFixed(0)} / ${Math.max(...r.logins).toFixed(0)}` : '—';
      console.log(
        `| ${r.attack} | ${r.connections} | ${ok} | ${times} | ${mib(r.startRss)} → ${mib(r.peakRss)} | ${r.peakFds} | ${r.requests} / ${r.failed} |`,
      );
    }
    const lines = readFileSync(audit, 'utf8').split('\n').filter(Boolean).length;
    console.log(`\naudit log: ${lines} records, ${(statSync(audit).size / 1024).toFixed(1)} KiB`);
    const failedHttp = rows.reduce((n, r) => n + r.failed, 0);
    const failedLogins = rows.reduce((n, r) => n + r.loginFailures.length, 0);
    const slow = rows.flatMap((r) => r.logins).filter((ms) => ms >= 2000).length;
    console.log(
      `HTTP success rate: ${((1 - failedHttp / rows.reduce((n, r) => n + r.requests, 0)) * 100).toFixed(2)} %; operator logins failed: ${failedLogins}; logins ≥ 2 s: ${slow}`,
    );
    if (failedHttp > 0 || failedLogins > 0 || slow > 0) process.exitCode = 1;
  } finally {
    await shop?.stop();
    copy.cleanup();
  }
}

const attackArg = process.argv.indexOf('--attack');
(attackArg >= 0 ? runAttacker(Number(process.argv[attackArg + 1]), process.argv[attackArg + 2]!) : main()).catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
