/**
 * Entry points of `livepatch eval` (one expression, printed, exit code by outcome) and
 * `livepatch repl` (line mode over node:readline), both over the agent's authenticated socket.
 */
import { EXIT, LivepatchError } from '../../shared';
import { connectFromOptions, type CommonOptions } from '../cli/options';
import { reportError, printJson } from '../cli/output';
import { replLoop } from './line-loop';
import { formatConsole } from './print';
import { RemoteRepl } from './session';

export { RemoteRepl } from './session';

/**
 * Evaluate `expression` once in the connection's default session. Prints captured console output and
 * the value; exit 0 when it evaluated, 1 for type errors/throws/timeouts, 3 auth or side-effect
 * refusal, 4 connection (see the error registry).
 */
export async function runEval(target: string, expression: string, opts: CommonOptions): Promise<number> {
  const client = await connectFromOptions(target, opts);
  try {
    const r = await client.request('eval', { code: expression });
    if (opts.json) printJson(r);
    else {
      process.stdout.write(formatConsole(r));
      process.stdout.write(r.output + '\n');
      if (r.truncated) process.stderr.write('livepatch: output truncated\n');
    }
    return EXIT.OK;
  } catch (e) {
    if (!opts.json && e instanceof LivepatchError && e.code === 'LP_ERR_EVAL_THROWN') {
      const lines = (e.details as { console?: Parameters<typeof formatConsole>[0]['console'] } | undefined)?.console;
      if (lines) process.stdout.write(formatConsole({ console: lines }));
    }
    return reportError(e, Boolean(opts.json));
  } finally {
    client.close();
  }
}

/** Interactive line-mode REPL in a new session; resolves with the exit code when input ends. */
export async function runRepl(target: string, opts: CommonOptions): Promise<number> {
  const client = await connectFromOptions(target, opts);
  const repl = new RemoteRepl(client);
  try {
    await repl.open();
    const terminal = Boolean(process.stdin.isTTY && process.stdout.isTTY);
    if (terminal) process.stdout.write(`connected to ${target} as ${client.name} (${client.role}); .help for help\n`);
    return await replLoop(repl, { input: process.stdin, output: process.stdout, terminal });
  } catch (e) {
    return reportError(e, false);
  } finally {
    await repl.close();
    client.close();
  }
}
