/**
 * `livepatch quarantine HOST:PORT [--drop ID | --reapply ID]`: the patches crash-loop protection took
 * out of replay (their host died soon after applying them). Without an option, lists them (read
 * role, from `status`); `--drop` forgets one for good and `--reapply` sends it through check, stage,
 * commit and the journal again (patch role). ID is the patch id, or `#SEQ` (its journal record) for a
 * patch without one. --json prints the list as an array, or the op's result.
 */
import type { Command } from 'commander';
import { LivepatchError } from '../../../shared';
import { formatCommit, formatQuarantined } from '../../format';
import { addCommonOptions, commonFrom, withAgent, type Finish } from '../options';
import { printJson, runCommand } from '../output';
import { progressReporter } from '../progress';

/** Register `quarantine` on `program`. */
export function registerQuarantine(program: Command, finish: Finish): void {
  addCommonOptions(
    program
      .command('quarantine')
      .description('list patches held back from replay after their host crashed; drop or re-apply one')
      .argument('<target>', 'agent address: host:port or unix:/path')
      .option('--drop <id>', 'forget this quarantined patch: it is never replayed (id, or #SEQ)')
      .option('--reapply <id>', 'check, stage and commit this quarantined patch again (id, or #SEQ)'),
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    const drop = o['drop'] as string | undefined;
    const reapply = o['reapply'] as string | undefined;
    finish(
      await runCommand(Boolean(opts.json), async () => {
        if (drop !== undefined && reapply !== undefined) throw new LivepatchError('LP_ERR_CLI_USAGE', 'give --drop or --reapply, not both');
        if (drop === undefined && reapply === undefined) {
          const s = await withAgent(target, opts, (c) => c.request('status', {}));
          const list = s.quarantined ?? [];
          if (opts.json) printJson(list);
          else if (!s.journal) process.stdout.write('this agent has no journal: nothing is quarantined\n');
          else process.stdout.write(list.length ? formatQuarantined(list) : 'no quarantined patches\n');
          return 0;
        }
        const progress = progressReporter(target);
        try {
          const args = drop !== undefined ? { drop } : { reapply: reapply! };
          const r = await withAgent(target, opts, (c) => c.request('quarantine', args, { onProgress: progress.onProgress }));
          progress.done();
          const name = r.patch.patchId ?? `#${r.patch.seq}`;
          if (opts.json) printJson(r);
          else if (r.action === 'dropped') process.stdout.write(`dropped ${name}: it will not be replayed\n`);
          else process.stdout.write(`re-applied ${name}: ${r.commit ? formatCommit(r.commit) : ''}\n`);
          return 0;
        } finally {
          progress.done();
        }
      }),
    );
  });
}
