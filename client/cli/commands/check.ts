/**
 * `livepatch check [HOST:PORT] PATCH...`: type-check only, nothing is staged. With an agent address
 * the patch is checked against the live program (op `check`, patch role); without one it is checked
 * offline against the local project at --root (shared/typecheck.ts, loaded lazily because the
 * TypeScript compiler is heavy and the other commands don't need it). Type errors go to stderr in
 * tsc's form and make the exit code 1; --json prints the CheckResult (with `diagnostics`).
 * With --check-here and an agent address, the type check runs on this machine against the agent's
 * live program (../../client-check.ts) and the agent only verifies the hashes and gives its static
 * verdict on the JavaScript.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { LivepatchError, parseTarget, type CheckResult, type PatchSet } from '../../../shared';
import { formatDiagnostics } from '../../format';
import { addCommonOptions, addPatchOptions, commonFrom, patchFrom, withAgent, type Finish } from '../options';
import { note, printJson, runCommand, wireOf } from '../output';
import { progressReporter } from '../progress';
import { checkOnClient } from '../../client-check';
import { checkLocally } from '../../local-check';

/** Split `[HOST:PORT] PATCH...`: the first word is an agent address when it parses as one and is not a path. */
export function splitTarget(words: string[]): { target?: string; paths: string[] } {
  const first = words[0];
  if (first !== undefined && words.length > 1 && parseTarget(first) && !existsSync(first)) return { target: first, paths: words.slice(1) };
  return { paths: words };
}

/** Check `patch` against the project at `root` on this machine. */
export function checkOffline(patch: PatchSet, root: string): CheckResult {
  const abs = resolve(root);
  if (!existsSync(join(abs, 'tsconfig.json'))) {
    throw new LivepatchError(
      'LP_ERR_CLI_USAGE',
      `no tsconfig.json in ${abs}: run offline check in the project root, pass --root DIR, or give HOST:PORT to check against a live agent`,
    );
  }
  const started = Date.now();
  const overlay = new Map<string, string>();
  for (const [id, source] of Object.entries(patch.files)) overlay.set(join(abs, id), source);
  const r = checkLocally(abs, overlay, () => {
    // Loaded only when it checks: it brings in the JavaScript compiler, which a native check does not need.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('../../../shared/typecheck') as typeof import('../../../shared/typecheck');
    return new mod.ProgramChecker(abs);
  });
  return {
    ok: !r.hasErrors,
    diagnostics: r.diagnostics,
    checkedFiles: r.checked,
    durationMs: Date.now() - started,
    engine: r.engine,
    ...(r.engineNote !== undefined ? { engineNote: r.engineNote } : {}),
  };
}

/** Register `check` on `program`. */
export function registerCheck(program: Command, finish: Finish): void {
  addPatchOptions(
    addCommonOptions(
      program
        .command('check')
        .description('type-check PATCH against the live program, or offline against the local project when no HOST:PORT is given')
        .usage('[options] [HOST:PORT] PATCH...')
        .argument('<args...>', '[HOST:PORT] then .ts files, directories, or a .json patch set'),
    ),
  )
    .option(
      '--check-here',
      'type-check on this machine against the live program (checkout at --checkout, live patches fetched and verified by hash)',
    )
    .option('--checkout <dir>', 'with --check-here: the checkout of the deployed commit (default: current directory)')
    .action(async (words: string[], o: Record<string, unknown>) => {
      const opts = commonFrom(o);
      finish(
        await runCommand(Boolean(opts.json), async () => {
          const { target, paths } = splitTarget(words);
          const patch = patchFrom(paths, o);
          let result: CheckResult;
          const here = o['checkHere'] === true;
          if (here && target === undefined)
            throw new LivepatchError(
              'LP_ERR_CLI_USAGE',
              '--check-here checks against a live agent: give HOST:PORT (without one, check is offline already)',
            );
          if (target === undefined) {
            result = checkOffline(patch, typeof o['root'] === 'string' ? o['root'] : process.cwd());
          } else if (here) {
            result = await withAgent(target, opts, async (c) => {
              const mine = await checkOnClient(c, patch, typeof o['checkout'] === 'string' ? o['checkout'] : process.cwd());
              if (!mine.result.ok || !mine.patch) return mine.result;
              // The agent verifies what the check was made against and gives its verdict on the JavaScript.
              const theirs = await c.request('check', { patch: mine.patch });
              return {
                ...theirs,
                diagnostics: [...mine.result.diagnostics.filter((d) => d.category !== 'error'), ...theirs.diagnostics],
                checkedFiles: Math.max(mine.result.checkedFiles, theirs.checkedFiles),
                durationMs: mine.result.durationMs + theirs.durationMs,
                ...(mine.result.engine !== undefined ? { engine: mine.result.engine } : {}),
                ...(mine.result.engineNote !== undefined ? { engineNote: mine.result.engineNote } : {}),
              };
            });
          } else {
            const progress = progressReporter(target);
            try {
              result = await withAgent(target, opts, (c) => c.request('check', { patch }, { onProgress: progress.onProgress }));
            } finally {
              progress.done();
            }
          }
          const errors = result.diagnostics.filter((d) => d.category === 'error').length;
          process.stderr.write(formatDiagnostics(result.diagnostics));
          const where = target ?? 'the local project';
          if (result.ok) {
            if (opts.json) printJson(result);
            else
              process.stdout.write(
                `ok: the patch type-checks against ${where} (${result.checkedFiles} files checked${result.checkedBy === 'client' ? ' on this machine' : ''} in ${Math.round(result.durationMs)} ms)\n`,
              );
            return 0;
          }
          const err = new LivepatchError('LP_ERR_PATCH_TYPE', `the patch does not type-check against ${where}: ${errors} error(s)`);
          note(err.message);
          if (opts.json) printJson({ ...result, error: wireOf(err) });
          return err.exitCode;
        }),
      );
    });
}
