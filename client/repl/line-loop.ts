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
  // Readline closes as soon as its input ends, which on a pipe happens while lines it has already read are still
  // queued here for evaluation; those lines keep their prompts in the transcript. Since Node 24 a closed interface
  // refuses prompt(), so after the close the prompt is written directly (what readline writes for it anyway when the
  // output is not a terminal).
  let inputOpen = true;
  rl.once('close', () => {
    inputOpen = false;
  });
  const prompt = (p?: string) => {
    if (p !== undefined) rl.setPrompt(p);
    if (inputOpen) rl.prompt();
    else write(rl.getPrompt());
  };
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
      prompt('lp> ');
      return;
    }
    if (interrupted) return rl.close();
    interrupted = true;
    write('\n(press Ctrl+C again or type .exit to leave)\n');
    prompt();
  });
  const lost = () => {
    exitCode = 4;
    write('\nthe connection to the agent closed\n');
    rl.close();
  };
  repl.client.once('close', lost);
  prompt();
  try {
    for await (const line of rl) {
      interrupted = false;
      if (!buffer) {
        const cmd = line.trim();
        if (cmd === '.exit') break;
        if (cmd === '.help') {
          write(HELP);
          prompt();
          continue;
        }
      }
      if (line.trim() === '.clear') {
        buffer = '';
        prompt('lp> ');
        continue;
      }
      buffer = buffer ? `${buffer}\n${line}` : line;
      if (isIncomplete(buffer)) {
        prompt('... ');
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
      prompt();
    }
  } finally {
    repl.client.off('close', lost);
    rl.close();
  }
  return exitCode;
}
