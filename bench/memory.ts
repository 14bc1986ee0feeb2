/**
 * Benchmark 5 — memory: heap growth of the example shop's process after 1000 apply/rollback cycles
 * of the sample two-module patch set, against the baseline taken after a warm-up, both after full GC.
 *
 * The shop (a built temp copy) runs in this process with the engine installed and the real pipeline
 * (type check in its worker thread, stage, commit, rollback); HTTP requests run between cycles so
 * generations get pinned and drained like in production. The figure that matters is the main
 * isolate's heap (where module versions live); RSS is printed too (it includes the checker worker).
 * With `--esm` the shop is built as ES modules (`"type": "module"`, tsc `module: NodeNext`) and
 * imported instead of required: the same figure for ES module apps.
 * Usage: node --expose-gc dist/bench/memory.js [--esm]   (re-executes itself with --expose-gc if needed;
 * env BENCH_CYCLES=1000)
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { copyShop, samplePatch } from '../examples/bench-kit';
import { install } from '../server/engine';
import { createPipeline } from '../server/pipeline';

const CYCLES = Number(process.env['BENCH_CYCLES'] ?? 1000);
const ESM = process.argv.includes('--esm');
// A real import() (tsc would turn `import()` into require() in this CommonJS build).
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- the only way to keep a real import() in CommonJS output
const importModule = new Function('url', 'return import(url)') as (url: string) => Promise<unknown>;
const WARMUP = 20;
const MB = 1024 * 1024;

function heap(): { heap: number; rss: number } {
  const gc = (globalThis as { gc?: () => void }).gc!;
  // Several passes: weak references and finalizers free more on the second and third.
  for (let i = 0; i < 3; i++) gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

async function main(): Promise<void> {
  const shop = copyShop({ esm: ESM });
  process.env['PORT'] = '0';
  const main = join(shop.root, 'dist', 'main.js');
  const engine = install({ root: shop.root, entry: main });
  const pipeline = createPipeline({ engine, root: shop.root });
  let port = 0;
  const log = console.log;
  console.log = (...args: unknown[]) => {
    const m = /app listening on (\d+)/.exec(String(args[0]));
    if (m) port = Number(m[1]);
    else log(...args);
  };
  try {
    if (ESM) await importModule(pathToFileURL(main).href);
    else require(main);
    console.log(`memory: ${ESM ? 'ES module' : 'CommonJS'} shop, ${engine.moduleIds().length} live modules`);
    while (port === 0) await new Promise((r) => setTimeout(r, 10));
    console.log = log;
    await pipeline.ready;
    const { patched } = samplePatch({ esm: ESM });
    const ctx = { who: 'bench' };
    const quote = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/quote?items=mug:12`);
      return ((await res.json()) as { total: number }).total;
    };
    const t0 = performance.now();
    let base = { heap: 0, rss: 0 };
    for (let i = 1; i <= CYCLES + WARMUP; i++) {
      await pipeline.apply({ files: patched, message: `cycle ${i}` }, ctx);
      const after = await quote();
      await pipeline.rollback(undefined, ctx);
      const back = await quote();
      if (after === back) throw new Error(`cycle ${i}: the patch did not change the quote (${after})`);
      if (i === WARMUP) {
        base = heap();
        console.log(
          `memory: baseline after ${WARMUP} warm-up cycles: heap ${(base.heap / MB).toFixed(1)} MB, rss ${(base.rss / MB).toFixed(1)} MB`,
        );
      } else if (i > WARMUP && (i - WARMUP) % 100 === 0) {
        const h = heap();
        const per = (performance.now() - t0) / i;
        console.log(
          `  after ${String(i - WARMUP).padStart(4)} cycles: heap ${(h.heap / MB).toFixed(1)} MB (${sign((h.heap - base.heap) / MB)} MB)   rss ${(h.rss / MB).toFixed(1)} MB   ${per.toFixed(0)} ms/cycle`,
        );
      }
    }
    const end = heap();
    const growth = (end.heap - base.heap) / MB;
    console.log(
      `heap growth after ${CYCLES} apply/rollback cycles: ${sign(growth)} MB (goal ≤ 10 MB → ${growth <= 10 ? 'met' : 'NOT met'})`,
    );
    // What the engine retains by design (history and every version's source + JS, for rollback).
    const lastPatched = engine.getVersion('src/pricing.ts', engine.currentGeneration - 1);
    const perCycle = ((end.heap - base.heap) / CYCLES / 1024).toFixed(1);
    console.log(
      `  generations: ${engine.currentGeneration} (live: ${engine.liveGenerations().length}), history entries: ${engine.history().length}, src/pricing.ts versions: ${lastPatched?.version ?? '?'}; ${perCycle} KB retained per cycle`,
    );
  } finally {
    console.log = log;
    await pipeline.close();
    shop.cleanup();
  }
}

function sign(x: number): string {
  return `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;
}

if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
  const r = spawnSync(process.execPath, ['--expose-gc', __filename, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
} else {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(1);
    },
  );
}
