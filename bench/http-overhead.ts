/**
 * Engine HTTP overhead: req/s of one small HTTP app run three ways side by side — engine off
 * (`node dist/main.js`), engine on (`node -r livepatch/register`, no agent: every request pinned,
 * every call through facades), and engine on after one commit (trampoline cells reassigned). The
 * handler does realistic work through live modules (price lookups, a class instance, JSON of ~40
 * lines). autocannon runs alternate between the sides (A B C, C B A, ...); medians, the ratio of
 * medians and the median of per-round ratios (robust to load drift) are printed.
 * Usage: node dist/bench/http-overhead.js   (env BENCH_ROUNDS=5, BENCH_SECONDS=4, BENCH_CONNECTIONS=10;
 * BENCH_NOLIVE=1 adds a side with the engine installed but no live module, to isolate per-request cost;
 * BENCH_BASELINE=<another built livepatch tree> adds that tree's engine as a side, e.g. the commit
 * before a change to the request path, so both are measured in the same alternating rounds)
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import * as ts from 'typescript';
import { launch, type Launched } from '../testkit/launch';

type Cannon = (opts: {
  url: string;
  connections: number;
  duration: number;
}) => Promise<{ requests: { average: number; total: number }; errors: number; non2xx: number }>;
// autocannon ships no type declarations; this is the slice of its API used here.
const autocannon: Cannon = require('autocannon');

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 4);
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 10);
const REPO = resolve(__dirname, '..', '..');
const DRIVER = join(REPO, 'dist', 'test', 'helpers', 'engine-driver.js');

const FILES: Record<string, string> = {
  'src/prices.ts': `const table = new Map<string, number>();
for (let i = 0; i < 500; i++) table.set('sku' + i, 1 + (i * 37) % 100);
export function price(sku: string): number { return table.get(sku) ?? 0; }
export function tax(amount: number, region: string): number { return region === 'EU' ? amount * 0.2 : amount * 0.07; }
export const CURRENCY = 'EUR';
`,
  'src/cart.ts': `import { price, tax, CURRENCY } from './prices';
export class Cart {
  lines: { sku: string; qty: number; unit: number }[] = [];
  add(sku: string, qty: number): void { this.lines.push({ sku, qty, unit: price(sku) }); }
  total(region: string): { net: number; tax: number; currency: string } {
    let net = 0;
    for (const l of this.lines) net += l.unit * l.qty;
    return { net, tax: Math.round(tax(net, region) * 100) / 100, currency: CURRENCY };
  }
}
export function render(seed: number): string {
  const cart = new Cart();
  for (let i = 0; i < 40; i++) cart.add('sku' + ((seed + i * 13) % 500), 1 + (i % 3));
  return JSON.stringify({ lines: cart.lines, total: cart.total(seed % 2 ? 'EU' : 'US') });
}
`,
  'src/main.ts': `import * as http from 'node:http';
import { render } from './cart';
let n = 0;
const server = http.createServer((req, res) => {
  const body = render(n++);
  res.writeHead(200, { 'content-type': 'application/json' }).end(body);
});
server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  console.log('app listening on ' + (typeof a === 'object' && a ? a.port : 0));
});
`,
};

function makeApp(): string {
  const root = mkdtempSync(join(tmpdir(), 'lp-bench-http-'));
  const write = (rel: string, text: string): void => {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  };
  write('tsconfig.json', '{ "compilerOptions": { "rootDir": "src", "outDir": "dist", "module": "commonjs", "target": "ES2022" } }');
  for (const [id, src] of Object.entries(FILES)) {
    write(id, src);
    write(id.replace(/^src/, 'dist').replace(/\.ts$/, '.js'), transpile(src));
  }
  mkdirSync(join(root, 'node_modules'));
  symlinkSync(REPO, join(root, 'node_modules', 'livepatch'), 'dir');
  return root;
}

function transpile(src: string): string {
  return ts.transpileModule(src, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
}

interface Side {
  name: string;
  app: Launched;
  port: number;
  rps: number[];
  /** Server CPU time per request (µs), from /proc: far less sensitive to other load than req/s. */
  cpuUs: number[];
}

/** utime + stime of a process in ms (Linux /proc, clock ticks of 10 ms); undefined elsewhere. */
function cpuMs(pid: number | undefined): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

async function start(root: string, name: string, preload: string[], liveRoot = root): Promise<Side> {
  const app = await launch({
    args: [...preload.flatMap((p) => ['-r', p]), 'dist/main.js'],
    cwd: root,
    env: { LIVEPATCH_ROOT: liveRoot, LIVEPATCH_TOKENS: undefined },
    ipc: true,
    name,
    // The app's warnings stay visible on this terminal.
    onOutput: (stream, d) => void (stream === 'stderr' && process.stderr.write(d)),
    ready: [{ stream: 'stdout', pattern: /app listening on (\d+)/ }],
  });
  return { name, app, port: Number(app.ready[0]![1]), rps: [], cpuUs: [] };
}

/** Apply one patch (the tax rate) through the engine driver in the child. */
async function patch(side: Side): Promise<void> {
  const src = FILES['src/prices.ts']!.replace('0.2', '0.21');
  const m: any = await side.app.request({ op: 'apply', changes: [{ id: 'src/prices.ts', source: src, js: transpile(src) }] });
  if (!m.ok) throw new Error(m.error?.message);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const root = makeApp();
  const sides = [
    await start(root, 'engine off', []),
    await start(root, 'engine on', ['livepatch/register']),
    await start(root, 'engine on, after a commit', ['livepatch/register', DRIVER]),
  ];
  const baseline = process.env['BENCH_BASELINE'];
  if (baseline)
    sides.splice(2, 0, await start(root, 'engine on, baseline tree', [join(resolve(baseline), 'dist', 'server', 'register.js')]));
  if (process.env['BENCH_NOLIVE']) {
    // Diagnosis: engine installed but no module live (root elsewhere): isolates the per-request wrapper.
    sides.push(await start(root, 'engine on, no live modules', ['livepatch/register'], tmpdir()));
  }
  try {
    await patch(sides.find((s) => s.name === 'engine on, after a commit')!);
    for (const s of sides) await autocannon({ url: `http://127.0.0.1:${s.port}/`, connections: CONNECTIONS, duration: 1 }); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? sides : [...sides].reverse();
      for (const s of order) {
        const cpu0 = cpuMs(s.app.pid);
        const res = await autocannon({ url: `http://127.0.0.1:${s.port}/`, connections: CONNECTIONS, duration: SECONDS });
        const cpu1 = cpuMs(s.app.pid);
        if (res.errors || res.non2xx) throw new Error(`${s.name}: ${res.errors} errors, ${res.non2xx} non-2xx`);
        s.rps.push(res.requests.average);
        if (cpu0 !== undefined && cpu1 !== undefined && res.requests.total > 0) s.cpuUs.push(((cpu1 - cpu0) * 1000) / res.requests.total);
        console.log(
          `round ${r + 1} ${s.name.padEnd(26)} ${res.requests.average.toFixed(0)} req/s   ${s.cpuUs.at(-1)?.toFixed(1) ?? '?'} µs CPU/req`,
        );
      }
    }
    const off = median(sides[0]!.rps);
    console.log(
      `\nhttp-overhead: ${ROUNDS} alternating rounds x ${SECONDS}s, ${CONNECTIONS} connections, Node ${process.version}, ${require('node:os').cpus().length} cores`,
    );
    // Per-round ratios pair each side with the 'off' run of the same round (adjacent in time), so load
    // drift on a shared machine cancels out better than in the ratio of medians.
    for (const s of sides) {
      const paired = median(s.rps.map((v, i) => v / sides[0]!.rps[i]!));
      console.log(
        `${s.name.padEnd(26)} median ${median(s.rps).toFixed(0).padStart(6)} req/s   ratio of medians ${(median(s.rps) / off).toFixed(3)}   median per-round ratio ${paired.toFixed(3)}`,
      );
    }
    if (sides.every((s) => s.cpuUs.length > 0)) {
      const offCpu = median(sides[0]!.cpuUs);
      for (const s of sides)
        console.log(
          `${s.name.padEnd(26)} median ${median(s.cpuUs).toFixed(1).padStart(6)} µs CPU/req   throughput-equivalent ratio (off CPU / side CPU) ${(offCpu / median(s.cpuUs)).toFixed(3)}`,
        );
    }
    const base = sides.find((s) => s.name === 'engine on, baseline tree');
    const on = sides.find((s) => s.name === 'engine on');
    if (base && on) {
      // This tree's engine against the baseline's, paired by round (adjacent runs).
      const rps = median(on.rps.map((v, i) => v / base.rps[i]!));
      const cpu = on.cpuUs.length === base.cpuUs.length && on.cpuUs.length ? median(on.cpuUs.map((v, i) => v - base.cpuUs[i]!)) : NaN;
      console.log(
        `engine on vs baseline tree: median per-round req/s ratio ${rps.toFixed(3)}, median per-round CPU difference ${cpu.toFixed(1)} µs/req`,
      );
    }
  } finally {
    await Promise.all(sides.map((s) => s.app.stop()));
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
