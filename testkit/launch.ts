/**
 * The one way tests, benchmarks and the demo run a child Node process:
 *   - launch(): a long-running app. Spawns `node ...args`, keeps a bounded tail of its stdout and
 *     stderr, waits for its readiness lines, answers IPC requests, and stops it (SIGTERM, then SIGKILL;
 *     with `group`, the whole process group). The handle is an AsyncDisposable (`await using`), and
 *     stop() is the explicit call. Every wait on the child (start-up, waitFor(), request()) rejects as
 *     soon as the child exits, with its recent stderr: a dead app never leaves a caller waiting for a
 *     timeout.
 *   - run(): a command run to completion (the CLI), resolving with its exit code and output.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

// Node 20 before 20.4 has no Symbol.asyncDispose; `await using` and the handle's disposer need one.
if (!(Symbol as { asyncDispose?: symbol }).asyncDispose) {
  Object.defineProperty(Symbol, 'asyncDispose', { value: Symbol('Symbol.asyncDispose') });
}

export type Stream = 'stdout' | 'stderr';

/** How the child ended: an exit code, a signal, or a spawn error. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

export interface LaunchOptions {
  /** Arguments to node: flags, preloads (`-r`), then the entry script and its arguments. */
  args: string[];
  /** A command that runs node, with its own arguments (e.g. `['valgrind', '--tool=cachegrind']`): the child is `wrapper… node args…`. */
  wrapper?: readonly string[];
  cwd?: string;
  /** Set in (or, with `undefined`, removed from) this process's environment for the child. */
  env?: Record<string, string | undefined>;
  /** Give the child a stdin pipe (`child.stdin`); otherwise its stdin is /dev/null. */
  stdin?: boolean;
  /** Open an IPC channel (needed by request()). */
  ipc?: boolean;
  /** launch() resolves once each pattern has matched on its stream (in any order). */
  ready?: ReadonlyArray<{ stream: Stream; pattern: RegExp }>;
  /** How long start-up may take, in ms (default 30 s). */
  timeoutMs?: number;
  /** What error messages call the child (default `app`). */
  name?: string;
  /** Characters of each stream kept in memory, the most recent (default 1 MiB). */
  keep?: number;
  /** Every chunk of output as it arrives (e.g. to append it to a log file). */
  onOutput?: (stream: Stream, chunk: Buffer) => void;
  /** Run the child in its own process group, so that stop() also ends whatever it started. */
  group?: boolean;
  /** How long stop() waits after SIGTERM before SIGKILL, in ms (default 3 s). */
  killAfterMs?: number;
}

export interface Launched extends AsyncDisposable {
  child: ChildProcess;
  pid: number;
  /** The matches of `ready`, in its order. */
  ready: RegExpExecArray[];
  /** The kept tail of stdout / stderr. */
  stdout: () => string;
  stderr: () => string;
  /** Both tails, labelled, for failure reports. */
  output: () => string;
  /** Resolves once the child has exited and its output is in (never rejects). */
  exited: Promise<Exit>;
  /** How the child ended, or undefined while it runs. */
  exit: () => Exit | undefined;
  /**
   * Resolve with the first match of `pattern` on `stream` (in the kept tail, or with `fresh` only in
   * output that arrives after this call); reject when the child exits first or after `timeoutMs`.
   */
  waitFor: (stream: Stream, pattern: RegExp, opts?: { timeoutMs?: number; fresh?: boolean }) => Promise<RegExpExecArray>;
  /**
   * Send `message` with a fresh numeric `id` over IPC; resolve with the first reply carrying that id for
   * which `event` (if given) returns false — replies it returns true for are progress, and the wait goes
   * on. Rejects when the child exits or the channel is closed.
   */
  request: (message: Record<string, unknown>, event?: (reply: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>;
  /** SIGTERM, SIGKILL after `killAfterMs`; resolves once the child has exited. Safe to call again. */
  stop: () => Promise<void>;
}

const DEFAULT_KEEP = 1024 * 1024;
/** After `exit`, how long to wait for the pipes to deliver the child's last output before reporting it. */
const DRAIN_MS = 100;

/** A loopback TCP port that was free a moment ago (bound, then released), for an app that listens on a fixed port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** This process's environment with `env` applied (`undefined` removes a variable). */
export function childEnv(env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

/** A bounded text tail of one output stream; `total` counts every character ever appended. */
class Tail {
  text = '';
  total = 0;
  constructor(private readonly keep: number) {}
  append(s: string): void {
    this.total += s.length;
    this.text += s;
    if (this.text.length > this.keep) this.text = this.text.slice(this.text.length - this.keep);
  }
  /** The kept text from absolute position `from` on (all of it when that part was dropped). */
  since(from: number): string {
    const start = from - (this.total - this.text.length);
    return start <= 0 ? this.text : this.text.slice(start);
  }
}

function describeExit(e: Exit): string {
  if (e.error) return `could not start: ${e.error.message}`;
  return e.code !== null ? `exit code ${e.code}` : `signal ${e.signal}`;
}

/** Start `node ...args`; resolves once the `ready` lines have appeared (at once without them). */
export async function launch(opts: LaunchOptions): Promise<Launched> {
  const name = opts.name ?? 'app';
  const group = opts.group ?? false;
  const [command, ...args] = [...(opts.wrapper ?? []), process.execPath, ...opts.args] as [string, ...string[]];
  const child = spawn(command, args, {
    cwd: opts.cwd ?? process.cwd(),
    env: childEnv(opts.env),
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', ...(opts.ipc ? ['ipc' as const] : [])],
    detached: group,
  });
  const tails: Record<Stream, Tail> = { stdout: new Tail(opts.keep ?? DEFAULT_KEEP), stderr: new Tail(opts.keep ?? DEFAULT_KEEP) };
  const watchers = new Set<() => void>();
  let exit: Exit | undefined;
  // Set once the child has exited and its last output is in (or DRAIN_MS passed): waits then fail.
  let gone: Exit | undefined;
  const onGone = new Set<(e: Exit) => void>();

  for (const stream of ['stdout', 'stderr'] as const) {
    child[stream]!.on('data', (d: Buffer) => {
      opts.onOutput?.(stream, d);
      tails[stream].append(d.toString());
      for (const w of [...watchers]) w();
    });
  }

  let resolveExited!: (e: Exit) => void;
  const exited = new Promise<Exit>((r) => (resolveExited = r));
  const finish = (e: Exit): void => {
    if (gone) return;
    gone = e;
    resolveExited(e);
    for (const f of [...onGone]) f(e);
    onGone.clear();
  };
  const ended = (e: Exit): void => {
    if (exit) return;
    exit = e;
    const t = setTimeout(() => finish(e), DRAIN_MS);
    child.once('close', () => {
      clearTimeout(t);
      finish(e);
    });
  };
  child.once('exit', (code, signal) => ended({ code, signal }));
  child.once('error', (error) => ended({ code: null, signal: null, error }));

  const output = (): string => `--- ${name} stdout ---\n${tails.stdout.text}\n--- ${name} stderr ---\n${tails.stderr.text}`;
  const recentStderr = (): string => tails.stderr.text.slice(-8192);

  const waitFor: Launched['waitFor'] = (stream, pattern, o = {}) => {
    const from = o.fresh ? tails[stream].total : 0;
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = pattern.exec(tails[stream].since(from));
        if (m) done(() => resolve(m));
        return Boolean(m);
      };
      const onExit = (e: Exit): void =>
        done(() => reject(new Error(`${name} ended (${describeExit(e)}) before ${pattern} on ${stream}\nstderr:\n${recentStderr()}`)));
      const timer =
        o.timeoutMs === undefined
          ? undefined
          : setTimeout(
              () => done(() => reject(new Error(`no ${pattern} on ${name}'s ${stream} within ${o.timeoutMs} ms\n${output()}`))),
              o.timeoutMs,
            );
      const done = (f: () => void): void => {
        clearTimeout(timer);
        watchers.delete(watch);
        onGone.delete(onExit);
        f();
      };
      const watch = (): void => void check();
      if (check()) return;
      if (gone) return onExit(gone);
      watchers.add(watch);
      onGone.add(onExit);
    });
  };

  let seq = 0;
  const request: Launched['request'] = (message, event) =>
    new Promise((resolve, reject) => {
      if (gone || exit || !child.connected) {
        reject(new Error(`${name} is not running (${exit ? describeExit(exit) : 'no IPC channel'})\nstderr:\n${recentStderr()}`));
        return;
      }
      const id = ++seq;
      const onMessage = (m: unknown): void => {
        const reply = m as Record<string, unknown> | null;
        if (!reply || typeof reply !== 'object' || reply['id'] !== id) return;
        if (event?.(reply)) return;
        done(() => resolve(reply));
      };
      const onExit = (e: Exit): void =>
        done(() =>
          reject(
            new Error(
              `${name} ended (${describeExit(e)}) before replying to ${JSON.stringify(message.op ?? message)}\nstderr:\n${recentStderr()}`,
            ),
          ),
        );
      const done = (f: () => void): void => {
        child.off('message', onMessage);
        onGone.delete(onExit);
        f();
      };
      child.on('message', onMessage);
      onGone.add(onExit);
      child.send({ ...message, id }, (err) => {
        if (err) done(() => reject(new Error(`${name}: sending ${JSON.stringify(message.op ?? '')} failed: ${err.message}`)));
      });
    });

  const signal = (sig: NodeJS.Signals, wholeGroup: boolean): void => {
    try {
      if (wholeGroup && group && child.pid !== undefined) process.kill(-child.pid, sig);
      else child.kill(sig);
    } catch {
      // Already gone.
    }
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      let kill: NodeJS.Timeout | undefined;
      if (!exit) {
        signal('SIGTERM', false);
        kill = setTimeout(() => signal('SIGKILL', true), opts.killAfterMs ?? 3000);
        kill.unref();
      }
      await exited;
      clearTimeout(kill);
      // Whatever the child started and left behind in its group goes with it.
      if (group) signal('SIGKILL', true);
    })());

  const handle: Launched = {
    child,
    pid: child.pid ?? -1,
    ready: [],
    stdout: () => tails.stdout.text,
    stderr: () => tails.stderr.text,
    output,
    exited,
    exit: () => exit,
    waitFor,
    request,
    stop,
    [Symbol.asyncDispose]: stop,
  };

  const ready = opts.ready ?? [];
  if (ready.length === 0) return handle;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name} did not start within ${timeoutMs} ms\n${output()}`)), timeoutMs);
  });
  try {
    const waits = ready.map((r) => waitFor(r.stream, r.pattern));
    for (const w of waits) w.catch(() => undefined);
    handle.ready = await Promise.race([Promise.all(waits), deadline]);
    return handle;
  } catch (e) {
    const reason = gone ? new Error(`${name} exited during start-up (${describeExit(gone)})\n${output()}`) : (e as Error);
    if (!exit) signal('SIGKILL', true);
    await exited;
    if (group) signal('SIGKILL', true);
    throw reason;
  } finally {
    clearTimeout(timer);
  }
}

export interface RunOptions {
  /** Arguments to node (the script first). */
  args: string[];
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed. */
  input?: string;
  /** Killed and rejected after this long, in ms (default 60 s). */
  timeoutMs?: number;
  /** Characters of each stream kept (default 64 MiB: the CLI's --json output is parsed whole). */
  keep?: number;
}

export interface RunResult {
  /** The exit code (-1 when ended by a signal). */
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `node ...args` to completion; resolves with its exit code and output (a non-zero exit is not an error). */
export function run(opts: RunOptions): Promise<RunResult> {
  const keep = opts.keep ?? 64 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, opts.args, {
      cwd: opts.cwd ?? process.cwd(),
      env: childEnv(opts.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out = new Tail(keep);
    const err = new Tail(keep);
    child.stdout.on('data', (d: Buffer) => out.append(d.toString()));
    child.stderr.on('data', (d: Buffer) => err.append(d.toString()));
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`node ${opts.args.join(' ')} did not finish within ${timeoutMs} ms\nstdout:\n${out.text}\nstderr:\n${err.text}`));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: out.text, stderr: err.text });
    });
    // A child that exits without reading its input must not fail the run.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}
