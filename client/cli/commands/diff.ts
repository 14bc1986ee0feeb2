/**
 * `livepatch diff HOST:PORT PATCH...`: a unified diff of each patched module against its live source
 * (new modules diff against nothing). Read-only; exit 0 whether or not anything differs, like `git diff`.
 * --json prints `[{module, isNew, changed, diff}]`.
 */
import type { Command } from 'commander';
import { createTwoFilesPatch } from 'diff';
import { addCommonOptions, addPatchOptions, commonFrom, patchFrom, withAgent, type Finish } from '../options';
import { printJson, runCommand } from '../output';

/** One module's diff against the live program. */
export interface ModuleDiff {
  module: string;
  isNew: boolean;
  changed: boolean;
  diff: string;
}

/** Unified diff text for one module (`a/` is live, `b/` is the patch), empty when identical. */
export function unifiedDiff(module: string, live: string | undefined, next: string): string {
  if (live === next) return '';
  const text = createTwoFilesPatch(
    live === undefined ? '/dev/null' : `a/${module}`,
    `b/${module}`,
    live ?? '',
    next,
    undefined,
    undefined,
    { context: 3 },
  );
  // jsdiff opens with a row of '=' (its stand-in for an Index: header); git and patch(1) don't need it.
  return text.replace(/^=+\n/, '');
}

/** Register `diff` on `program`. */
export function registerDiff(program: Command, finish: Finish): void {
  addPatchOptions(
    addCommonOptions(
      program
        .command('diff')
        .description('unified diff of PATCH against the live sources')
        .argument('<target>', 'agent address: host:port or unix:/path')
        .argument('<patch...>', '.ts files, directories, or a .json patch set'),
    ),
  ).action(async (target: string, paths: string[], o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const patch = patchFrom(paths, o);
        const diffs = await withAgent(target, opts, async (c) => {
          const live = new Set((await c.request('versions', {})).map((v) => v.module));
          const out: ModuleDiff[] = [];
          for (const module of Object.keys(patch.files).sort()) {
            const next = patch.files[module]!;
            const before = live.has(module) ? (await c.request('source', { module })).source : undefined;
            const diff = unifiedDiff(module, before, next);
            out.push({ module, isNew: before === undefined, changed: diff !== '', diff });
          }
          return out;
        });
        if (opts.json) printJson(diffs);
        else process.stdout.write(diffs.map((d) => d.diff).join(''));
        return 0;
      }),
    );
  });
}
