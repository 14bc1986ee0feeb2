/**
 * The host side of the type-check service (checker-worker.ts): a child process forked lazily on the
 * first check (a production process pays for the compiler only once someone actually patches),
 * which answers requests one at a time, forwards progress, and is forked again if it dies (e.g. past
 * its heap limit) so a failure there never reaches the host.
 *
 * Memory: the service's V8 heap is capped (`maxMb`, LIVEPATCH_CHECKER_MAX_MB) and the process exits
 * after `idleMs` without a request (LIVEPATCH_CHECKER_IDLE_MS), which returns all of its memory to
 * the system; the host itself never loads the compiler for patching. A check that takes longer than
 * `timeoutMs` kills the service (so a stuck check cannot hold the patch lock forever).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { lstatSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LivepatchError } from '../../shared/errors';
import { sha256 } from '../../shared/hash';
import type { CheckProgress } from '../../shared/typecheck';
import type { CheckerEngine, CheckerEngineSetting, CheckerStatus } from '../../shared/ops';
import type { Diagnostic } from '../../shared/patch';
import type { CheckRequest as ReplCheckRequest } from '../repl/check-protocol';
import type { CheckerRequest, CheckerResponse, CheckerResult, CheckerWorkerData, ServiceRequest } from './checker-protocol';

/** Limits of the type-check service; every field has a default. */
export interface CheckerLimits {
  /** V8 old-space limit of the service process, MB (default 1024). */
  maxMb?: number;
  /** Stop the service after this long without a request, ms (default 30000). */
  idleMs?: number;
  /** Kill the service when one request takes longer, ms (default 300000). */
  timeoutMs?: number;
  /**
   * Directory for the checker's persisted incremental state (default: the journal directory, else
   * `<root>/.livepatch`); false = none (every cold check builds the whole program).
   */
  stateDir?: string | false;
  /** Which compiler checks whole programs (default 'auto': checker-worker.ts). */
  engine?: CheckerEngineSetting;
}

export const CHECKER_DEFAULTS = { maxMb: 1024, idleMs: 30_000, timeoutMs: 300_000, engine: 'auto' } as const;

/**
 * The service's young-generation semi-space, MB. Building a program allocates syntax trees that all
 * survive, so a young collection copies nearly everything it finds. Node 24's V8 lets a semi-space
 * grow to 64 MB (Node 20 and 22: 16 MB), and its collections then copy tens of MB at a time: capped
 * at 16 MB, a cold check on Node 24 took about 11 % less time and warm checks were not slower (at
 * 8 MB they were; BENCHMARKS.md § Cold applies). On Node 20 and 22 this is their default.
 */
const CHECKER_SEMI_SPACE_MB = 16;

interface Pending {
  resolve: (r: Exclude<CheckerResponse, { type: 'progress' | 'error' }>) => void;
  reject: (e: Error) => void;
  onProgress?: (p: CheckProgress) => void;
}

/** The environment of the service: the host's, without what would start a second agent in it. */
function serviceEnv(data: CheckerWorkerData, maxMb: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LIVEPATCH_CHECKER_CONFIG: JSON.stringify(data) };
  // NODE_OPTIONS may hold `-r livepatch/register`; the host's own heap settings do not apply either.
  delete env['NODE_OPTIONS'];
  // The native compiler's process (a Go program) inherits this environment: its soft memory limit
  // is the service's heap cap, unless the operator set one.
  if (!env['GOMEMLIMIT']) env['GOMEMLIMIT'] = `${maxMb}MiB`;
  delete env['LIVEPATCH_TOKENS'];
  // Node's compile cache (Node ≥ 22.1; older Nodes ignore the variable): a new checker loads the
  // compiler from V8's code cache (0.1 s less on an idle machine, 0.3–0.5 s on a busy one:
  // BENCHMARKS.md § Cold applies). An operator's own NODE_COMPILE_CACHE is kept.
  if (!env['NODE_COMPILE_CACHE']) {
    const dir = compileCacheDir();
    if (dir) env['NODE_COMPILE_CACHE'] = dir;
  }
  return env;
}

/**
 * Where the checker keeps Node's compile cache: `$TMPDIR/livepatch-<uid>/compile-cache`, in a folder
 * this user owns and nobody else can write (else none). Not next to the persisted state: that is the
 * journal's folder by default, and megabytes of cache must never fill the journal's volume.
 */
function compileCacheDir(): string | undefined {
  try {
    const uid = process.getuid?.();
    const base = join(tmpdir(), `livepatch-${uid ?? 'user'}`);
    try {
      mkdirSync(base, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
    }
    const st = lstatSync(base);
    if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) return undefined;
    return join(base, 'compile-cache');
  } catch {
    return undefined;
  }
}

/** One type-check service per project, started on first use. */
export class CheckerClient {
  private child: ChildProcess | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly limits: Required<CheckerLimits>;
  /** The compiler of the last check, and why 'auto' fell back (shown by `status`). */
  private engine: { engine: CheckerEngine; note?: string } | undefined;

  constructor(
    private readonly data: CheckerWorkerData,
    limits: CheckerLimits = {},
  ) {
    this.limits = {
      stateDir: limits.stateDir ?? false,
      maxMb: limits.maxMb ?? CHECKER_DEFAULTS.maxMb,
      idleMs: limits.idleMs ?? CHECKER_DEFAULTS.idleMs,
      timeoutMs: limits.timeoutMs ?? CHECKER_DEFAULTS.timeoutMs,
      engine: limits.engine ?? CHECKER_DEFAULTS.engine,
    };
  }

  /** Whether the service is running (it starts on the first request). */
  get started(): boolean {
    return this.child !== undefined;
  }

  /** What `status` shows: stopped, busy (a request is out) or ready (running and idle). */
  get status(): CheckerStatus {
    const state = !this.child ? 'stopped' : this.pending.size > 0 ? 'busy' : 'ready';
    const pid = this.child?.pid;
    return {
      state,
      ...(pid !== undefined ? { pid } : {}),
      idleMs: this.limits.idleMs,
      maxMb: this.limits.maxMb,
      ...(this.engine ? { engine: this.engine.engine, ...(this.engine.note !== undefined ? { engineNote: this.engine.note } : {}) } : {}),
    };
  }

  /** The service's process id while it runs (benchmarks and tests read its memory). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Check the overlay and transpile `req.transpile`; rejects with a LivepatchError. */
  async run(req: Omit<CheckerRequest, 'id' | 'kind'>, onProgress?: (p: CheckProgress) => void): Promise<CheckerResult> {
    const r = await this.send({ ...req, kind: 'program' }, onProgress);
    if (r.type !== 'result') throw new LivepatchError('LP_ERR_INTERNAL', 'The type checker answered the wrong request');
    if (r.check.engine) this.engine = { engine: r.check.engine, ...(r.engineNote !== undefined ? { note: r.engineNote } : {}) };
    return r;
  }

  /** Diagnostics of a REPL input (server/repl/input-check.ts); rejects with a LivepatchError. */
  async checkRepl(req: Omit<ReplCheckRequest, 'type' | 'id'>): Promise<Diagnostic[]> {
    const r = await this.send({ ...req, kind: 'repl' });
    if (r.type !== 'repl') throw new LivepatchError('LP_ERR_INTERNAL', 'The type checker answered the wrong request');
    return r.diagnostics;
  }

  private send(
    req: Omit<CheckerRequest, 'id'> | Omit<Extract<ServiceRequest, { kind: 'repl' }>, 'id'>,
    onProgress?: (p: CheckProgress) => void,
  ): Promise<Exclude<CheckerResponse, { type: 'progress' | 'error' }>> {
    if (this.closed) return Promise.reject(new LivepatchError('LP_ERR_INTERNAL', 'The checker is closed'));
    const id = this.nextId++;
    let child: ChildProcess;
    try {
      child = this.ensureChild(req.kind);
    } catch (err) {
      return Promise.reject(
        new LivepatchError('LP_ERR_INTERNAL', `The type checker could not start: ${(err as Error)?.message ?? String(err)}`),
      );
    }
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const timeoutMs = this.limits.timeoutMs;
    const timer = setTimeout(() => {
      process.stderr.write(`livepatch: type check took over ${timeoutMs} ms; restarting the checker\n`);
      child.kill('SIGKILL');
    }, timeoutMs);
    timer.unref();
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        this.armIdle();
      };
      this.pending.set(id, {
        resolve: (r) => (settle(), resolve(r)),
        reject: (e) => (settle(), reject(e)),
        onProgress,
      });
      // While a request is out, the channel keeps the host alive long enough to hear the answer.
      this.refChannel(child, true);
      // The service handles messages in order, so queuing is simply sending.
      child.send({ ...req, id } as ServiceRequest, (err) => {
        if (err) this.failAll(`The type checker could not be reached: ${err.message}`);
      });
    });
  }

  /** Stop an idle service after `idleMs` so its memory goes back to the system. */
  private armIdle(): void {
    if (this.pending.size > 0 || !this.child) return;
    this.refChannel(this.child, false);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const c = this.child;
    this.idleTimer = setTimeout(() => {
      if (this.child === c && this.pending.size === 0) {
        this.child = undefined;
        c.disconnect?.();
        c.kill('SIGTERM');
      }
    }, this.limits.idleMs);
    this.idleTimer.unref();
  }

  /** Stop the service; pending requests are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const c = this.child;
    this.child = undefined;
    this.failAll('The checker was closed');
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    // Not waited for: the service holds no state worth a graceful end, and waiting on an unref'd child
    // would let a host that is shutting down exit before its own close() resolved.
    c.disconnect?.();
    c.kill('SIGTERM');
  }

  private refChannel(c: ChildProcess, on: boolean): void {
    const ch = c.channel as { ref?: () => void; unref?: () => void } | undefined | null;
    if (on) ch?.ref?.();
    else ch?.unref?.();
  }

  private ensureChild(first: ServiceRequest['kind']): ChildProcess {
    if (this.child) return this.child;
    const child = fork(join(__dirname, 'checker-worker.js'), [], {
      // Not the host's flags: its preloads (livepatch/register would start a second agent), inspector, heap size.
      execArgv: [`--max-old-space-size=${this.limits.maxMb}`, `--max-semi-space-size=${CHECKER_SEMI_SPACE_MB}`],
      env: serviceEnv({ ...this.data, engine: this.limits.engine, firstRequest: first }, this.limits.maxMb),
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
      serialization: 'advanced',
    });
    // An idle service must not keep the host process alive.
    child.unref();
    this.refChannel(child, false);
    child.on('message', (msg: CheckerResponse) => this.onMessage(msg));
    child.on('error', (err) => {
      process.stderr.write(`livepatch: type checker failed: ${err.message}\n`);
    });
    child.on('exit', (code, signal) => {
      // Only the current service's exit fails pending checks: an idle one stopped earlier may exit
      // after a new one has taken requests.
      if (this.child !== child) return;
      this.child = undefined;
      if (this.pending.size === 0) return;
      const oom = signal === 'SIGABRT' || code === 134;
      const why = oom
        ? `The type checker ran out of memory (limit ${this.limits.maxMb} MB: raise LIVEPATCH_CHECKER_MAX_MB); retry the operation`
        : `The type checker stopped (${signal ?? `exit code ${code}`}); retry the operation`;
      process.stderr.write(`livepatch: ${why}\n`);
      this.failAll(why);
    });
    this.child = child;
    return child;
  }

  private onMessage(msg: CheckerResponse): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'progress') {
      try {
        p.onProgress?.(msg.progress);
      } catch {
        // A progress listener's failure must not break the check.
      }
      return;
    }
    this.pending.delete(msg.id);
    if (msg.type === 'error') p.reject(new LivepatchError(msg.code, msg.message));
    else p.resolve(msg);
  }

  private failAll(message: string): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new LivepatchError('LP_ERR_INTERNAL', message));
    }
  }
}

/** The state file of `tsconfig`'s checker in `dir` (one per tsconfig, so projects sharing a directory do not collide). */
export function checkerStateFile(dir: string, tsconfig: string): string {
  return join(dir, `checker-${sha256(tsconfig).slice(0, 12)}.tsbuildinfo`);
}

/** The one service per project in this process, shared by the pipeline and the REPL. */
const services = new Map<string, { client: CheckerClient; users: number }>();

/** A handle on the shared service: use `client`, call `release` once when done. */
export interface CheckerLease {
  readonly client: CheckerClient;
  release(): Promise<void>;
}

/**
 * The type-check service of the project at `data.root` (with `data.tsconfig`), created on first use
 * with `limits` and shared by every later caller (whose limits are then ignored); it is closed when
 * the last user releases it.
 */
export function acquireChecker(data: CheckerWorkerData, limits?: CheckerLimits): CheckerLease {
  const key = `${data.root}\0${data.tsconfig ?? ''}\0${data.assumeDirectOnly === true}`;
  let entry = services.get(key);
  if (!entry) {
    entry = { client: new CheckerClient(data, limits), users: 0 };
    services.set(key, entry);
  }
  entry.users += 1;
  const e = entry;
  let released = false;
  return {
    client: e.client,
    async release() {
      if (released) return;
      released = true;
      e.users -= 1;
      if (e.users > 0) return;
      if (services.get(key) === e) services.delete(key);
      await e.client.close();
    },
  };
}
