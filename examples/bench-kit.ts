/**
 * Helpers shared by the end-to-end benchmarks in bench/ (overhead, memory, zero-downtime): summary
 * statistics, a paced HTTP load generator that records every request's outcome, a throwaway copy of
 * the example shop whose sources can be rewritten (children are started with testkit/launch.ts).
 * Lives with the example because every helper here is about running the shop.
 */
import * as http from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as ts from 'typescript';
import { SHOP, esmImports, prepareShop } from './demo-app';

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/**
 * Geometric mean of ratios (each a side's figure against a baseline's) and its 95 % bootstrap interval:
 * the ratios are resampled with replacement `draws` times and the 2.5th and 97.5th percentiles of the
 * resampled means are taken. A fixed seed makes the interval the same for the same ratios.
 */
export function geomeanInterval(ratios: readonly number[], draws = 10_000): { mean: number; low: number; high: number } {
  const logs = ratios.map(Math.log);
  const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  // mulberry32: a small seeded generator, so the printed interval is reproducible.
  let seed = 0x2f6b1d3;
  const random = (): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const means: number[] = [];
  for (let d = 0; d < draws; d++) {
    let sum = 0;
    for (let i = 0; i < logs.length; i++) sum += logs[Math.floor(random() * logs.length)]!;
    means.push(sum / logs.length);
  }
  return { mean: Math.exp(mean(logs)), low: Math.exp(percentile(means, 2.5)), high: Math.exp(percentile(means, 97.5)) };
}

export { freePort } from '../testkit/launch';

/** A private copy of the example shop (sources, tsconfig, dist) that a benchmark may rewrite. */
export interface ShopCopy {
  root: string;
  /** Replace src/<file> with `source` and write its transpiled dist/<file>.js (what a deploy would do). */
  deploy(file: string, source: string): void;
  cleanup(): void;
}

/**
 * A built copy of examples/shop in a temp dir (see prepareShop), with `livepatch` linked as a
 * dependency. With `standIn`, `node_modules/livepatch` is then replaced by a no-op stand-in (`keep`
 * returns `init()`, `pin` calls `fn`): the same app as it would run with no livepatch at all, for
 * baselines. (livepatch's own `keep` refuses to run when no engine is installed.)
 */
export function copyShop(opts: { standIn?: boolean; esm?: boolean; livepatch?: string } = {}): ShopCopy {
  const dir = mkdtempSync(join(tmpdir(), 'lp-bench-'));
  const root = prepareShop(dir, { esm: opts.esm });
  if (opts.livepatch !== undefined) {
    // Another built livepatch checkout (a baseline to compare with): `-r livepatch/register` loads its engine.
    const pkg = join(root, 'node_modules', 'livepatch');
    rmSync(pkg, { recursive: true, force: true });
    symlinkSync(resolve(opts.livepatch), pkg, 'dir');
  }
  if (opts.standIn) {
    const pkg = join(root, 'node_modules', 'livepatch');
    rmSync(pkg);
    mkdirSync(pkg);
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'livepatch', version: '0.0.0-stand-in', main: 'index.js' }));
    writeFileSync(join(pkg, 'index.js'), "'use strict';\nexports.keep = (_key, init) => init();\nexports.pin = (fn) => fn();\n");
  }
  const options = ts.parseJsonConfigFileContent(
    ts.readConfigFile(join(root, 'tsconfig.json'), ts.sys.readFile).config,
    ts.sys,
    root,
  ).options;
  return {
    root,
    deploy(file, source) {
      writeFileSync(join(root, 'src', file), source);
      const js = ts.transpileModule(source, { compilerOptions: options, fileName: join(root, 'src', file) }).outputText;
      writeFileSync(join(root, 'dist', file.replace(/\.ts$/, '.js')), js);
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The sample patch set (module id → source) and the deployed sources of the same modules (`esm`: for the ES module shop). */
export function samplePatch(opts: { esm?: boolean } = {}): { patched: Record<string, string>; original: Record<string, string> } {
  const dir = join(SHOP, 'patches', 'bulk-discount', 'src');
  const patched: Record<string, string> = {};
  const original: Record<string, string> = {};
  const fix = (s: string): string => (opts.esm ? esmImports(s) : s);
  for (const name of readdirSync(dir)) {
    patched[`src/${name}`] = fix(readFileSync(join(dir, name), 'utf8'));
    original[`src/${name}`] = fix(readFileSync(join(SHOP, 'src', name), 'utf8'));
  }
  return { patched, original };
}

/**
 * The files a benchmark's patch sends: the sample patch (`bulk-discount`), or (`same`) the patched
 * modules' own source with only a comment added, which measures being patched (new versions evaluated
 * by the engine, calls from captured references forwarded) apart from what the patch's code does.
 */
export function benchPatchFiles(kind: string): Record<string, string> {
  const sample = samplePatch();
  if (kind !== 'same') return sample.patched;
  return Object.fromEntries(Object.entries(sample.original).map(([f, src]) => [f, `${src}\n// bench: same source\n`]));
}

export interface Sample {
  /** Start time (ms, performance.now()). */
  start: number;
  ms: number;
  ok: boolean;
  /** Response body (successful requests only). */
  body?: string;
}

/**
 * Paced load: `rate` requests per second to `path`, at most `maxInflight` open, until stop(). Every
 * request's outcome is kept (bounded by the caller's duration × rate). Uses a keep-alive agent like a
 * real upstream proxy would.
 */
export function startLoad(
  port: number,
  path: string,
  rate: number,
  maxInflight = 64,
  timeoutMs = 5000,
): { samples: Sample[]; stop(): Promise<Sample[]> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: maxInflight });
  const samples: Sample[] = [];
  let inflight = 0;
  let stopped = false;
  const pending = new Set<Promise<void>>();
  const one = () => {
    const start = performance.now();
    inflight++;
    const p = new Promise<void>((done) => {
      const finish = (ok: boolean, body?: string) => {
        samples.push({ start, ms: performance.now() - start, ok, ...(body !== undefined ? { body } : {}) });
        inflight--;
        done();
      };
      const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: timeoutMs }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => finish(res.statusCode === 200, body));
        res.on('error', () => finish(false));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => finish(false));
    });
    pending.add(p);
    void p.then(() => pending.delete(p));
  };
  const tickMs = 10;
  const perTick = rate * (tickMs / 1000);
  let credit = 0;
  const timer = setInterval(() => {
    credit += perTick;
    while (credit >= 1) {
      credit -= 1;
      // A request that cannot be sent because too many are open counts as failed: the client gave up.
      if (inflight >= maxInflight) samples.push({ start: performance.now(), ms: 0, ok: false });
      else one();
    }
  }, tickMs);
  return {
    samples,
    async stop() {
      if (!stopped) {
        stopped = true;
        clearInterval(timer);
        await Promise.all([...pending]);
        agent.destroy();
      }
      return samples;
    },
  };
}
