/**
 * `eval`, `repl` and `attach`: thin entries into the REPL (client/repl) and the terminal UI
 * (client/tui). They are loaded with `require` when the command runs, so the rest of the CLI starts
 * fast.
 */
import type { Command } from 'commander';
import { addCommonOptions, commonFrom, type Finish } from '../options';
import { runCommand } from '../output';

/* eslint-disable @typescript-eslint/no-require-imports -- loaded when the command runs */
const loadRepl = () => require('../../repl/index') as typeof import('../../repl/index');
const loadTui = () => require('../../tui/index') as typeof import('../../tui/index');
/* eslint-enable @typescript-eslint/no-require-imports */

/** Register `eval`, `repl` and `attach` on `program`. */
export function registerDelegated(program: Command, finish: Finish): void {
  addCommonOptions(
    program
      .command('eval')
      .description('evaluate a TypeScript expression in the live process (read/patch tokens: side-effect-free only)')
      .argument('<target>', 'agent address: host:port or unix:/path')
      .argument('<expression>', 'TypeScript expression'),
  ).action(async (target: string, expression: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    finish(await runCommand(Boolean(opts.json), () => loadRepl().runEval(target, expression, opts)));
  });

  addCommonOptions(
    program
      .command('repl')
      .description('typed REPL against the live program')
      .argument('<target>', 'agent address: host:port or unix:/path'),
    { json: false },
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    finish(await runCommand(false, () => loadRepl().runRepl(target, opts)));
  });

  addCommonOptions(
    program
      .command('attach')
      .description('terminal UI: generations, modules, history, live events')
      .argument('<target>', 'agent address: host:port or unix:/path'),
    { json: false },
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    finish(await runCommand(false, () => loadTui().runAttach(target, opts)));
  });
}
