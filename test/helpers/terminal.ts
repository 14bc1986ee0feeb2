/**
 * A real terminal for end-to-end TUI tests: a detached tmux session on a private socket runs one
 * command; tests press keys by tmux name, type text, and read the screen as plain text
 * (`capture-pane -p`). The pane stays after the command exits, so its exit status can be read.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let counter = 0;

/** Single-quote a word for sh. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface TerminalOptions {
  env?: Record<string, string>;
  cwd?: string;
  cols?: number;
  rows?: number;
}

export class Terminal {
  readonly socket: string;
  readonly session = 'lp';
  /** The pane's shell writes the command's exit status here when it ends. */
  readonly #statusFile: string;
  #closed = false;

  private constructor(socket: string) {
    this.socket = socket;
    this.#statusFile = join(tmpdir(), `${socket}.status`);
  }

  /** Start `argv` in a new cols×rows terminal. */
  static start(argv: string[], opts: TerminalOptions = {}): Terminal {
    const t = new Terminal(`lp-test-${process.pid}-${++counter}`);
    const env = { LANG: 'C.UTF-8', ...opts.env };
    const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    // remain-on-exit is set in the same tmux invocation so even a command that exits at once
    // leaves its pane (and exit status) behind.
    t.#tmux([
      'new-session',
      '-d',
      '-s',
      t.session,
      '-x',
      String(opts.cols ?? 120),
      '-y',
      String(opts.rows ?? 40),
      ...(opts.cwd ? ['-c', opts.cwd] : []),
      ...envArgs,
      `${argv.map(shellQuote).join(' ')}; echo $? > ${shellQuote(t.#statusFile)}`,
      ';',
      'set-option',
      '-t',
      t.session,
      'remain-on-exit',
      'on',
    ]);
    return t;
  }

  #tmux(args: string[]): string {
    return execFileSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** The visible screen as text, one line per row. */
  screen(): string {
    return this.#tmux(['capture-pane', '-p', '-t', this.session]);
  }

  /** Press keys by tmux name (`Down`, `Enter`, `Escape`, `C-c`, `e`, `BTab`). */
  press(...keys: string[]): void {
    for (const k of keys) this.#tmux(['send-keys', '-t', this.session, k]);
  }

  /** Type literal text. */
  type(text: string): void {
    this.#tmux(['send-keys', '-t', this.session, '-l', text]);
  }

  /**
   * Exit status once the command has exited (128 + n when killed by signal n), else undefined. The
   * pane's shell records it in a file: tmux 3.3 can mark a pane dead (its pty closed) without ever
   * filling in #{pane_dead_status}, depending on whether it reaps the process before or after EOF.
   */
  exitStatus(): number | undefined {
    let text: string;
    try {
      text = readFileSync(this.#statusFile, 'utf8').trim();
    } catch {
      return undefined;
    }
    return text === '' ? undefined : Number(text);
  }

  /**
   * Poll the screen until `want` (substring, RegExp or predicate) matches a settled screen (the same
   * on two captures); resolves with it.
   * Rejects with the last screen so a failing test shows what was there.
   */
  async waitFor(want: string | RegExp | ((screen: string) => boolean), timeoutMs = 20_000): Promise<string> {
    const test =
      typeof want === 'function' ? want : typeof want === 'string' ? (s: string) => s.includes(want) : (s: string) => want.test(s);
    const deadline = Date.now() + timeoutMs;
    let last: string;
    for (;;) {
      last = this.screen();
      // A match must survive a second capture: tmux may be between two halves of one redraw.
      if (test(last)) {
        await new Promise((r) => setTimeout(r, 60));
        const again = this.screen();
        if (again === last) return last;
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${String(want)}; the screen was:\n${last}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Wait until the command has exited; resolves with its status. */
  async waitExit(timeoutMs = 10_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.exitStatus();
      if (s !== undefined) return s;
      if (Date.now() > deadline) throw new Error(`the command did not exit; the screen was:\n${this.screen()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Kill the tmux server (and with it the command) and remove its socket. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#tmux(['kill-server']);
    } catch {
      /* already gone */
    }
    // tmux leaves the socket file behind; one per test run would pile up in /tmp.
    rmSync(join(process.env['TMUX_TMPDIR'] ?? '/tmp', `tmux-${process.getuid?.() ?? 0}`, this.socket), { force: true });
    rmSync(this.#statusFile, { force: true });
  }
}
