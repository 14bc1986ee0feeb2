/**
 * Benchmark — apply: cold and warm check+stage+commit times of the patch pipeline on generated
 * projects of 20, 100 and 300 modules, and the host's event-loop max delay during each apply
 * (perf_hooks monitorEventLoopDelay inside the app, resolution 5 ms).
 *
 * Each project runs as a real app process (`-r livepatch/register` plus the test pipeline driver,
 * no agent). "cold" is the first apply with no persisted checker state (checker process start +
 * whole-program build); "warm" is the median of the following one-module body changes;
 * "after idle" is the next apply once the checker process has exited for idleness (it starts again from
 * its persisted incremental state); "after restart" is the first apply of a new app process on the same
 * project (same state file).
 * Usage: npm run build && node dist/bench/apply.js   (env BENCH_SIZES=20,100,300 BENCH_WARM=5
 * BENCH_CHECKER_IDLE_MS=3000 BENCH_ENGINE=auto|native|typescript: the checker's compiler, as
 * LIVEPATCH_CHECKER_ENGINE)
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckerEngineSetting } from '../shared/ops';
import { buildProject, REPO } from '../test/helpers/project';
import { startPipelineApp, type PipelineApp } from '../test/helpers/pipeline-app';

const SIZES = (process.env['BENCH_SIZES'] ?? '20,100,300').split(',').map(Number);
const WARM = Number(process.env['BENCH_WARM'] ?? 5);
const IDLE_MS = Number(process.env['BENCH_IDLE_MS'] ?? 10_000);
const CHECKER_IDLE_MS = Number(process.env['BENCH_CHECKER_IDLE_MS'] ?? 3000);
/** The checker's compiler (BENCH_ENGINE, as LIVEPATCH_CHECKER_ENGINE); bench/footprint.ts takes it too. */
export const ENGINE = (process.env['BENCH_ENGINE'] ?? 'auto') as CheckerEngineSetting;

/** Source of generated module i: imports two earlier modules, exports a type, a function and a class. */
export function moduleSource(i: number, k: number): string {
  const deps = i === 0 ? [] : [...new Set([i - 1, Math.floor(i / 2)])];
  const imports = deps.map((j) => `import { f${j}, type R${j} } from './m${j}';`).join('\n');
  const uses = deps.map((j) => `f${j}(x - 1).value`).join(' + ') || '0';
  return `${imports}
export interface R${i} { id: number; label: string; value: number; parts: readonly number[] }
// The constant is not exported: changing it is a body-only change (no declaration shape change).
const K${i}: number = ${k};
export function f${i}(x: number): R${i} {
  if (x <= 0) return { id: ${i}, label: 'm${i}', value: K${i}, parts: [] };
  const parts: number[] = [];
  for (let n = 0; n < 3; n++) parts.push((x * (n + 1)) % 7);
  const value = (${uses}) % 1000003 + parts.reduce((a, b) => a + b, 0);
  return { id: ${i}, label: \`m${i}:\${x}\`, value, parts };
}
export class C${i} {
  private hits = 0;
  constructor(readonly name: string) {}
  hit(): R${i} {
    this.hits += 1;
    return f${i}(this.hits % 3);
  }
}
${deps.map((j) => `export type Pair${i}_${j} = [R${i}, R${j}];`).join('\n')}
`;
}

/** Generate an n-module project in a temp dir and build it; returns its root. */
export function generate(n: number): string {
  const root = mkdtempSync(join(tmpdir(), `lp-bench-${n}-`));
  mkdirSync(join(root, 'src'), { recursive: true });
  mkdirSync(join(root, 'node_modules'));
  symlinkSync(REPO, join(root, 'node_modules', 'livepatch'), 'dir');
  symlinkSync(join(REPO, 'node_modules', '@types'), join(root, 'node_modules', '@types'), 'dir');
  writeFileSync(join(root, 'package.json'), '{ "name": "bench-app", "private": true }\n');
  writeFileSync(
    join(root, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        // node16 (CommonJS here, as the package has no "type"): both compilers accept it, where
        // TypeScript 7 no longer supports 'node' (node10) resolution.
        module: 'node16',
        moduleResolution: 'node16',
        rootDir: 'src',
        outDir: 'dist',
        strict: true,
        skipLibCheck: true,
        types: ['node'],
      },
      include: ['src'],
    }),
  );
  for (let i = 0; i < n; i++) writeFileSync(join(root, 'src', `m${i}.ts`), moduleSource(i, 1));
  const all = Array.from({ length: n }, (_, i) => `import { f${i} } from './m${i}';`).join('\n');
  writeFileSync(
    join(root, 'src', 'main.ts'),
    `import * as http from 'node:http';\n${all}\nconst fs = [${Array.from({ length: n }, (_, i) => `f${i}`).join(', ')}];\n` +
      `const server = http.createServer((req, res) => res.end(JSON.stringify(fs[Number((req.url ?? '/0').slice(1)) % fs.length]!(3))));\n` +
      `server.listen(0, '127.0.0.1', () => { const a = server.address(); console.log('app listening on ' + (typeof a === 'object' && a ? a.port : 0)); });\n`,
  );
  buildProject(root);
  return root;
}

interface Run {
  wallMs: number;
  timings: Record<string, number>;
  eldMaxMs: number;
  eldP99Ms: number;
}

async function applyOnce(app: PipelineApp, id: string, text: string): Promise<Run> {
  await app.op('eld-start');
  const t = Date.now();
  const r = await app.op('apply', { patch: { files: { [id]: text } } });
  const wallMs = Date.now() - t;
  const eld = (await app.op('eld-stop')).result as { maxMs: number; p99Ms: number };
  if (!r.ok) throw new Error(`apply failed: ${JSON.stringify(r.error)}`);
  return { wallMs, timings: r.result.timings ?? {}, eldMaxMs: eld.maxMs, eldP99Ms: eld.p99Ms };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const eldText = (max: number, p99: number) => `${max.toFixed(0)}/${p99.toFixed(0)}`.padStart(10);
const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(0).padStart(6) : '     -');

async function main(): Promise<void> {
  console.log(`apply benchmark: node ${process.version}, ${WARM} warm applies per size, checker engine ${ENGINE}`);
  console.log(`event-loop delay as max/p99; idle = ${IDLE_MS} ms with nothing happening (the machine's own noise)`);
  console.log(
    `checker idle time ${CHECKER_IDLE_MS} ms; after idle / after restart: total wall time of the apply (check part in parentheses)`,
  );
  console.log(
    'modules |   idle eld | cold: total  check  stage        eld | warm (median): total  check  stage  eld (worst) | after idle (check) | after restart (check)   (ms)',
  );
  for (const n of SIZES) {
    const root = generate(n);
    const pipelineOpts = { checker: { idleMs: CHECKER_IDLE_MS, engine: ENGINE } };
    let app = await startPipelineApp(root, pipelineOpts, 60_000);
    try {
      const mid = Math.floor(n / 2);
      const id = `src/m${mid}.ts`;
      // Baseline: the same monitor with nothing happening (the machine is shared; this shows its noise).
      await app.op('eld-start');
      await new Promise((r) => setTimeout(r, IDLE_MS));
      const idle = (await app.op('eld-stop')).result as { maxMs: number; p99Ms: number };
      const cold = await applyOnce(app, id, moduleSource(mid, 2));
      const warm: Run[] = [];
      for (let w = 0; w < WARM; w++) warm.push(await applyOnce(app, id, moduleSource(mid, 3 + w)));
      // The checker exits after its idle time; the next apply starts it again from the persisted state.
      await new Promise((r) => setTimeout(r, CHECKER_IDLE_MS + 1500));
      const afterIdle = await applyOnce(app, id, moduleSource(mid, 3 + WARM));
      // A new process on the same project (no journal: it starts from the deployed files).
      await app.stop();
      app = await startPipelineApp(root, pipelineOpts, 60_000);
      const afterRestart = await applyOnce(app, id, moduleSource(mid, 4 + WARM));
      console.log(
        `${String(n).padStart(7)} | ${eldText(idle.maxMs, idle.p99Ms)} | ${fmt(cold.wallMs)} ${fmt(cold.timings.check ?? NaN)} ${fmt(cold.timings.stage ?? NaN)} ${eldText(cold.eldMaxMs, cold.eldP99Ms)} |` +
          ` ${fmt(median(warm.map((r) => r.wallMs)))} ${fmt(median(warm.map((r) => r.timings.check ?? NaN)))} ${fmt(median(warm.map((r) => r.timings.stage ?? NaN)))} ${eldText(Math.max(...warm.map((r) => r.eldMaxMs)), Math.max(...warm.map((r) => r.eldP99Ms)))} |` +
          ` ${fmt(afterIdle.wallMs)} (${fmt(afterIdle.timings.check ?? NaN)}) | ${fmt(afterRestart.wallMs)} (${fmt(afterRestart.timings.check ?? NaN)})`,
      );
    } finally {
      await app.stop();
      rmSync(root, { recursive: true, force: true });
    }
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
