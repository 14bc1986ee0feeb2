/**
 * `eval`, `repl` and `attach`: thin entries into the REPL (client/repl) and the terminal UI
 * (client/tui). They are loaded with `require` when the command runs, so the rest of the CLI starts
 * fast and still works in a build that lacks them (then: a clear error, exit 2).
 */
import type { Command } from 'commander';
import { LivepatchError } from '../../../shared';
import { addCommonOptions, commonFrom, type CommonOptions, type Finish } from '../options';
import { runCommand } from '../output';

type Loader = () => unknown;

/** Load `fn` from a lazily required module; LP_ERR_CLI_UNAVAILABLE when the module or export is missing. */
export function loadEntry<F>(what: string, load: Loader, fn: string): F {
  let mod: Record<string, unknown>;
  try {
    mod = load() as Record<string, unknown>;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw e;
    throw new LivepatchError('LP_ERR_CLI_UNAVAILABLE', `${what} is not available in this build`);
  }
  const f = mod[fn];
  if (typeof f !== 'function') throw new LivepatchError('LP_ERR_CLI_UNAVAILABLE', `${what} is not available in this build`);
  return f as F;
}

/* eslint-disable @typescript-eslint/no-require-imports */
const loadRepl: Loader = () => require('../../repl/index');
const loadTui: Loader = () => require('../../tui/index');
/* eslint-enable @typescript-eslint/no-require-imports */

type RunEval = (target: string, expression: string, opts: CommonOptions) => Promise<number>;
type RunTarget = (target: string, opts: CommonOptions) => Promise<number>;

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
    finish(await runCommand(Boolean(opts.json), () => loadEntry<RunEval>('eval', loadRepl, 'runEval')(target, expression, opts)));
  });

  addCommonOptions(
    program
      .command('repl')
      .description('typed REPL against the live program')
      .argument('<target>', 'agent address: host:port or unix:/path'),
    { json: false },
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    finish(await runCommand(false, () => loadEntry<RunTarget>('repl', loadRepl, 'runRepl')(target, opts)));
  });

  addCommonOptions(
    program
      .command('attach')
      .description('terminal UI: generations, modules, history, live events')
      .argument('<target>', 'agent address: host:port or unix:/path'),
    { json: false },
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    finish(await runCommand(false, () => loadEntry<RunTarget>('attach', loadTui, 'runAttach')(target, opts)));
  });
}
