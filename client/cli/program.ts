/**
 * The `livepatch` command line: builds the commander program from one registration function per
 * command (client/cli/commands/), runs it, and turns the outcome into an exit code. Commander's own
 * usage errors exit 2 (and print a JSON error under --json); help and --version exit 0.
 */
import { Command, CommanderError } from 'commander';
import { EXIT, PACKAGE_VERSION, PROTOCOL_VERSION } from '../../shared';
import { registerApply } from './commands/apply';
import { registerAudit } from './commands/audit';
import { registerCheck } from './commands/check';
import { registerDelegated } from './commands/delegated';
import { registerDiff } from './commands/diff';
import { registerInspect } from './commands/inspect';
import { registerManifest } from './commands/manifest';
import { registerQuarantine } from './commands/quarantine';
import { registerRestart } from './commands/restart';
import { registerWarm } from './commands/warm';
import { registerRollback } from './commands/rollback';
import { registerSign } from './commands/sign';
import { registerToken } from './commands/token';
import { printJson } from './output';

/** Shown at the end of `livepatch --help`; scripts rely on these numbers. */
export const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  patch rejected (type errors, unreachable change, repeated top-level effect, staging, verify or migration failure)
  2  usage error
  3  authentication or permission denied
  4  cannot connect or timed out
  5  conflict (base changed, or another commit won)
  6  committed, then reverted by the watch (apply --watch)

The token comes from $LIVEPATCH_TOKEN or --token-file FILE, never from an argument.
HOST:PORT is host:port, [v6addr]:port or unix:/path/to.sock.
`;

/** Build the program. `finish` receives each command's exit code. */
export function buildProgram(finish: (code: number) => void): Command {
  const program = new Command('livepatch');
  program
    .description('Live-patch a running Node.js process with type-checked TypeScript.')
    .version(`${PACKAGE_VERSION} (protocol ${PROTOCOL_VERSION})`, '-V, --version')
    .exitOverride()
    .configureOutput({
      outputError: (str, write) => write(`livepatch: ${str.replace(/^error: /, '')}`),
    })
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES_HELP);
  registerInspect(program, finish);
  registerDiff(program, finish);
  registerCheck(program, finish);
  registerApply(program, finish);
  registerRollback(program, finish);
  registerRestart(program, finish);
  registerWarm(program, finish);
  registerQuarantine(program, finish);
  registerDelegated(program, finish);
  registerAudit(program, finish);
  registerToken(program, finish);
  registerSign(program, finish);
  registerManifest(program, finish);
  // Subcommands copied the settings above when created; the exit-code text belongs on each help page too.
  for (const cmd of program.commands) cmd.addHelpText('after', EXIT_CODES_HELP);
  return program;
}

/** Run the CLI with `argv` (process.argv form). Resolves with the exit code; never throws. */
export async function main(argv: string[]): Promise<number> {
  let code: number = EXIT.OK;
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return EXIT.OK;
      if (argv.includes('--json')) {
        printJson({ error: { code: 'LP_ERR_CLI_USAGE', message: err.message.replace(/^error: /, ''), retryable: false } });
      }
      return EXIT.USAGE;
    }
    throw err;
  }
}
