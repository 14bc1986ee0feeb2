/**
 * Benchmark 4 — commit pause: how long the synchronous swap to a new generation (`engine.commit`)
 * blocks the event loop for a 50-module patch set, measured in-process on a generated project of 50
 * modules (each with a function, a class and a constant, importing its neighbour). Staging (evaluation
 * of the new versions) happens before and is not part of the pause; only `commit` is timed. A 1-module
 * patch set is timed alongside for scale. Goal: median ≤ 1 ms.
 * Usage: node dist/bench/commit-pause.js   (env BENCH_COMMITS=60)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ts from 'typescript';
import { median, percentile } from '../examples/bench-kit';
import { install } from '../server/engine';
import type { StageChange } from '../server/engine/types';

const MODULES = 50;
const COMMITS = Number(process.env['BENCH_COMMITS'] ?? 60);
const OPTIONS: ts.CompilerOptions = { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, esModuleInterop: true, strict: true };

const name = (i: number) => `m${String(i).padStart(2, '0')}`;

/** Source of module i at revision `rev`. */
function moduleSource(i: number, rev: number): string {
  const dep = i > 0 ? `import { f as prev } from './${name(i - 1)}';\n` : 'const prev = (x: number) => x;\n';
  return `${dep}
export const LABEL = '${name(i)}-r${rev}';
export function f(x: number): number {
  return prev(x) + ${i} + ${rev};
}
export class Box {
  constructor(readonly n: number) {}
  value(): number {
    return f(this.n) * 2;
  }
}
`;
}

function transpile(source: string): string {
  return ts.transpileModule(source, { compilerOptions: OPTIONS }).outputText;
}

function generate(root: string): void {
  mkdirSync(join(root, 'src'));
  mkdirSync(join(root, 'dist'));
  writeFileSync(
    join(root, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { ...OPTIONS, target: 'ES2022', module: 'commonjs', rootDir: 'src', outDir: 'dist' },
      include: ['src'],
    }),
  );
  const all = Array.from({ length: MODULES }, (_, i) => i);
  const main = all.map((i) => `export * as ${name(i)} from './${name(i)}';`).join('\n') + '\n';
  for (const i of all) {
    writeFileSync(join(root, 'src', `${name(i)}.ts`), moduleSource(i, 1));
    writeFileSync(join(root, 'dist', `${name(i)}.js`), transpile(moduleSource(i, 1)));
  }
  writeFileSync(join(root, 'src', 'main.ts'), main);
  writeFileSync(join(root, 'dist', 'main.js'), transpile(main));
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'lp-bench-commit-'));
  try {
    generate(root);
    const engine = install({ root });
    // Loading the app makes its 50 modules live (generation 1).
    const app = require(join(root, 'dist', 'main.js')) as Record<
      string,
      { f(x: number): number; Box: new (n: number) => { value(): number } }
    >;
    const boxes = Array.from({ length: MODULES }, (_, i) => new app[name(i)]!.Box(i));
    let rev = 1;
    const changes = (count: number): StageChange[] => {
      rev++;
      return Array.from({ length: count }, (_, i) => {
        const source = moduleSource(i, rev);
        return { id: `src/${name(i)}.ts`, source, js: transpile(source) };
      });
    };
    const timed = { 1: [] as number[], [MODULES]: [] as number[] } as Record<number, number[]>;
    let check = 0;
    for (let k = 0; k < COMMITS; k++) {
      for (const count of [MODULES, 1]) {
        const staged = await engine.stage(changes(count));
        const t0 = process.hrtime.bigint();
        engine.commit(staged, { message: `bench ${k}` });
        const t1 = process.hrtime.bigint();
        timed[count]!.push(Number(t1 - t0) / 1e6);
        // Use the new code so the facades are exercised between commits.
        check += app[name(MODULES - 1)]!.f(1) + boxes[MODULES - 1]!.value();
      }
    }
    console.log(
      `commit pause: ${COMMITS} commits each of a ${MODULES}-module and a 1-module patch set, project of ${MODULES} modules (checksum ${check})`,
    );
    for (const count of [MODULES, 1]) {
      const xs = timed[count]!;
      console.log(
        `  ${String(count).padStart(2)} modules: median ${median(xs).toFixed(3)} ms   p95 ${percentile(xs, 95).toFixed(3)} ms   max ${Math.max(...xs).toFixed(3)} ms`,
      );
    }
    console.log(`  goal: median ≤ 1 ms for ${MODULES} modules → ${median(timed[MODULES]!) <= 1 ? 'met' : 'NOT met'}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
