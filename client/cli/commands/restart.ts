/**
 * `livepatch restart HOST:PORT [--deadline MS]`: rolling restart of a cluster primary's workers. Each
 * worker is replaced in turn by a new one that already serves the current generation (committed
 * patches survive); the old one drains its connections and is killed only if the deadline passes.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { addCommonOptions, commonFrom, withAgent, type Finish } from '../options';
import { printJson, runCommand } from '../output';
import { progressReporter } from '../progress';

function parseDeadline(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 100 || n > 600_000) throw new InvalidArgumentError('expected milliseconds between 100 and 600000');
  return n;
}

/** Register `restart` on `program`. */
export function registerRestart(program: Command, finish: Finish): void {
  addCommonOptions(
    program
      .command('restart')
      .description("rolling restart of a cluster primary's workers, keeping the current generation")
      .argument('<target>', 'agent address of the cluster primary: host:port or unix:/path')
      .option('--deadline <ms>', 'how long an old worker may drain before it is killed (default 10000)', parseDeadline),
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    const deadlineMs = o['deadline'] as number | undefined;
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const progress = progressReporter(target);
        try {
          const r = await withAgent(target, opts, (c) =>
            c.request('restart', deadlineMs !== undefined ? { deadlineMs } : {}, { onProgress: progress.onProgress, timeoutMs: 0 }),
          );
          progress.done(); // clear the progress line before the result is printed
          if (opts.json) printJson(r);
          else {
            for (const x of r.replaced) {
              process.stdout.write(
                `worker ${x.old.id} (pid ${x.old.pid}) → worker ${x.new.id} (pid ${x.new.pid}) at generation ${x.new.generation}; old one ${x.ended}\n`,
              );
            }
            process.stdout.write(`restarted ${r.replaced.length} worker(s) in ${r.durationMs} ms, generation ${r.generation}\n`);
          }
          return 0;
        } finally {
          progress.done();
        }
      }),
    );
  });
}
