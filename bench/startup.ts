/**
 * Benchmark — startup: what making every module live costs when the app starts. The engine parses and
 * instruments each module of the app as it loads (server/engine/analyze.ts, instrument.ts); this
 * times a generated project of N modules from `node` start until the app listens, plain vs under
 * `-r livepatch/register` with the engine only (no tokens: no agent), alternating, medians. With
 * BENCH_BASELINE=<another built livepatch tree> that tree's register runs as a third side (e.g. an
 * earlier commit checked out with `git worktree add`).
 * Usage: npm run build && node dist/bench/startup.js   (env BENCH_SIZES=100,300 BENCH_ROUNDS=7 BENCH_BASELINE)
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from '../testkit/launch';
import { generate } from './apply';

const SIZES = (process.env['BENCH_SIZES'] ?? '100,300').split(',').map(Number);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7);
const BASELINE = process.env['BENCH_BASELINE'];

/** Milliseconds from spawn until the app prints that it listens. */
async function timeToListen(root: string, register: string | undefined): Promise<number> {
  const t = process.hrtime.bigint();
  await using _app = await launch({
    args: [...(register ? ['-r', register] : []), join('dist', 'main.js')],
    cwd: root,
    env: { LIVEPATCH_ROOT: root, LIVEPATCH_TOKENS: undefined },
    ready: [{ stream: 'stdout', pattern: /app listening/ }],
  });
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function main(): Promise<void> {
  console.log(`startup benchmark: node ${process.version}, ${ROUNDS} alternating rounds, medians (ms from spawn to listening)`);
  const sides: [string, string | undefined][] = [
    ['plain', undefined],
    ['engine', 'livepatch/register'],
    ...(BASELINE ? ([['baseline', join(BASELINE, 'dist', 'server', 'register.js')]] as [string, string][]) : []),
  ];
  console.log(`modules | ${sides.map(([name]) => name.padStart(8)).join(' | ')} | engine - plain${BASELINE ? ' | baseline - plain' : ''}`);
  for (const n of SIZES) {
    const root = generate(n);
    try {
      const times = sides.map(() => [] as number[]);
      await timeToListen(root, 'livepatch/register'); // warm the file cache once
      for (let r = 0; r < ROUNDS; r++) for (let i = 0; i < sides.length; i++) times[i]!.push(await timeToListen(root, sides[i]![1]));
      const m = times.map(median);
      const diffs = m.slice(1).map((x) => (x - m[0]!).toFixed(0).padStart(14));
      console.log(`${String(n).padStart(7)} | ${m.map((x) => x.toFixed(0).padStart(8)).join(' | ')} | ${diffs.join(' | ')}`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
