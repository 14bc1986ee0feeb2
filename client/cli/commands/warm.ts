/**
 * `livepatch warm HOST:PORT`: start the agent's type-check service and build the live program now,
 * so the check or apply that follows within the service's idle time is a warm one. Answers at once;
 * the build runs in the service at its lower priority.
 */
import type { Command } from 'commander';
import { checkerLine } from '../../format';
import { addCommonOptions, commonFrom, withAgent, type Finish } from '../options';
import { printJson, runCommand } from '../output';

/** Register `warm` on `program`. */
export function registerWarm(program: Command, finish: Finish): void {
  addCommonOptions(
    program
      .command('warm')
      .description("build the live program in the agent's type checker now, so the next check or apply is warm")
      .argument('<target>', 'agent address: host:port or unix:/path'),
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const r = await withAgent(target, opts, (c) => c.request('warm', {}));
        if (opts.json) printJson(r);
        else {
          process.stdout.write(
            r.started ? 'building the live program in the type checker\n' : `nothing to do: ${r.reason ?? 'already running'}\n`,
          );
          if (r.checker) process.stdout.write(`checker: ${checkerLine(r.checker)}\n`);
        }
        return 0;
      }),
    );
  });
}
