/**
 * The line-mode REPL loop over node:readline: history, multi-line input (lines are joined while the
 * input is incomplete), a few dot-commands, and each complete input evaluated in the remote session.
 */
import * as readline from 'node:readline';
import type { RemoteRepl } from './session';
import { isIncomplete } from './incomplete';
import { formatEvalError, formatResult } from './print';

const HELP = `.help     this help
.clear    drop the lines typed so far
.exit     leave (also Ctrl+D)
Live modules: mod('src/rates.ts').rate('EUR'), or import * as rates from './src/rates'
Declarations persist for the session; top-level await works (admin).
`;

export interface LoopOptions {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  terminal: boolean;
}

/** Read, evaluate, print until end of input or `.exit`. Resolves with the exit code. */
export async function replLoop(repl: RemoteRepl, io: LoopOptions): Promise<number> {
  const rl = readline.createInterface({ input: io.input, output: io.output, terminal: io.terminal, historySize: 1000, prompt: 'lp> ' });
  const write = (s: string) => io.output.write(s);
  let buffer = '';
  let exitCode = 0;
  let interrupted = false;
  rl.on('SIGINT', () => {
    if (buffer || rl.line) {
      buffer = '';
      write('\n');
      // Drop the half-typed line too (end of line, then delete to its start).
      rl.write(null, { ctrl: true, name: 'e' });
      rl.write(null, { ctrl: true, name: 'u' });
      rl.setPrompt('lp> ');
      rl.prompt();
      return;
    }
    if (interrupted) return rl.close();
    interrupted = true;
    write('\n(press Ctrl+C again or type .exit to leave)\n');
    rl.prompt();
  });
  const lost = () => {
    exitCode = 4;
    write('\nthe connection to the agent closed\n');
    rl.close();
  };
  repl.client.once('close', lost);
  rl.prompt();
  try {
    for await (const line of rl) {
      interrupted = false;
      if (!buffer) {
        const cmd = line.trim();
        if (cmd === '.exit') break;
        if (cmd === '.help') {
          write(HELP);
          rl.prompt();
          continue;
        }
      }
      if (line.trim() === '.clear') {
        buffer = '';
        rl.setPrompt('lp> ');
        rl.prompt();
        continue;
      }
      buffer = buffer ? `${buffer}\n${line}` : line;
      if (isIncomplete(buffer)) {
        rl.setPrompt('... ');
        rl.prompt();
        continue;
      }
      const code = buffer;
      buffer = '';
      rl.setPrompt('lp> ');
      if (code.trim()) {
        try {
          write(formatResult(await repl.eval(code)));
        } catch (e) {
          write(formatEvalError(e));
          if (repl.client.closed) break;
        }
      }
      rl.prompt();
    }
  } finally {
    repl.client.off('close', lost);
    rl.close();
  }
  return exitCode;
}
