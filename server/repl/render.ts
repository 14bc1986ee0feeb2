/**
 * Rendering for the wire: values through util.inspect, size-limited; thrown values reduced to their
 * message (never a stack); a session-local console that records output instead of writing to the
 * host's stdout.
 */
import { format, inspect } from 'node:util';
import type { EvalResult } from '../../shared/ops';

/** Largest rendered value, and largest total console text per evaluation. */
export const MAX_OUTPUT = 64 * 1024;
const MAX_CONSOLE_ENTRIES = 1000;

/** Truncate `text` to `max` characters, reporting whether it was cut. */
export function limit(text: string, max = MAX_OUTPUT): { text: string; truncated: boolean } {
  return text.length > max ? { text: text.slice(0, max) + '…', truncated: true } : { text, truncated: false };
}

/** util.inspect with bounds, so a huge object graph cannot blow up the reply. */
export function render(value: unknown): { text: string; truncated: boolean } {
  let text: string;
  try {
    text = inspect(value, { depth: 4, maxArrayLength: 200, maxStringLength: MAX_OUTPUT, breakLength: 100 });
  } catch (e) {
    text = `[uninspectable: ${messageOf(e)}]`;
  }
  return limit(text);
}

/** The thrown value's message: `Name: message` for errors, its rendering otherwise; no stack. */
export function messageOf(e: unknown): string {
  try {
    if (e && typeof e === 'object' && typeof (e as Error).message === 'string') {
      const name = typeof (e as Error).name === 'string' ? (e as Error).name : 'Error';
      return limit(`${name}: ${(e as Error).message}`, 4096).text;
    }
    return limit(inspect(e, { depth: 2 }), 4096).text;
  } catch {
    return 'uninspectable thrown value';
  }
}

type Level = EvalResult['console'][number]['level'];

/** A console bound to one session: calls are recorded into the current evaluation's buffer. */
export class CapturedConsole {
  entries: EvalResult['console'] = [];
  truncated = false;
  #size = 0;

  /** Start a new evaluation's buffer and return the previous one's entries (late async output included). */
  reset(): void {
    this.entries = [];
    this.truncated = false;
    this.#size = 0;
  }

  /** The object installed as `console` in the session. */
  makeConsole(): Record<string, (...args: unknown[]) => void> {
    const rec =
      (level: Level) =>
      (...args: unknown[]) =>
        this.#record(level, args);
    const c = { log: rec('log'), info: rec('info'), warn: rec('warn'), error: rec('error'), debug: rec('debug'), trace: rec('debug') };
    return { ...c, dir: (v: unknown) => this.#record('log', [inspect(v, { depth: 4 })]), table: rec('log') };
  }

  #record(level: Level, args: unknown[]): void {
    if (this.truncated) return;
    let text: string;
    try {
      text = format(...args);
    } catch (e) {
      text = `[unformattable: ${messageOf(e)}]`;
    }
    if (this.entries.length >= MAX_CONSOLE_ENTRIES || this.#size + text.length > MAX_OUTPUT) {
      this.truncated = true;
      return;
    }
    this.#size += text.length;
    this.entries.push({ level, text });
  }
}
