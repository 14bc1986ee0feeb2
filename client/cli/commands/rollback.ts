/**
 * `livepatch rollback HOST:PORT [--to GENERATION]`: atomically restore the module versions of an
 * earlier generation (default: the previous one). The restore is itself a new generation, so it shows
 * in `history` and can be rolled back in turn.
 */
import type { Command } from 'commander';
import { formatCommit } from '../../format';
import { addCommonOptions, commonFrom, parseGeneration, withAgent, type Finish } from '../options';
import { printJson, runCommand } from '../output';
import { LivepatchError } from '../../../shared';
import { isFleetUrl } from '../../../shared/fleet';
import { fleetRollbackCommand } from './fleet-etcd';

/** A generation: positive for agents; fleets also take 0 (before any fleet patch). */
function parseFleetOrAgentGeneration(value: string): number {
  return value === '0' ? 0 : parseGeneration(value);
}
import { progressReporter } from '../progress';

/** Register `rollback` on `program`. */
export function registerRollback(program: Command, finish: Finish): void {
  addCommonOptions(
    program
      .command('rollback')
      .description('restore the module versions of an earlier generation (default: the previous one)')
      .argument('<target>', 'agent address: host:port or unix:/path; or a fleet: etcd://HOST:PORT/NAME')
      .option(
        '--to <generation>',
        'the generation whose versions to restore (for a fleet: a fleet generation, 0 = none of its patches)',
        parseFleetOrAgentGeneration,
      ),
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    const to = o['to'] as number | undefined;
    if (isFleetUrl(target)) return finish(await fleetRollbackCommand(target, Boolean(opts.json), to));
    if (to === 0)
      return finish(
        await runCommand(Boolean(opts.json), async () => {
          throw new LivepatchError('LP_ERR_CLI_USAGE', '--to 0 is for fleets; agent generations start at 1');
        }),
      );
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const progress = progressReporter(target);
        try {
          const r = await withAgent(target, opts, (c) =>
            c.request('rollback', to !== undefined ? { to } : {}, { onProgress: progress.onProgress }),
          );
          progress.done(); // clear the progress line before the result is printed
          if (opts.json) printJson(r);
          else process.stdout.write(`rolled back: ${formatCommit(r)}\n`);
          return 0;
        } finally {
          progress.done();
        }
      }),
    );
  });
}
