/**
 * The host side of the checker worker: starts it lazily on the first check (a production process
 * pays the ~400 MB / few-second cold start only once someone actually patches), queues requests one
 * at a time, forwards progress, and restarts the worker if it dies (e.g. out of memory) so a crash
 * there never reaches the host. A check that takes longer than `checkTimeoutMs` terminates the worker
 * (so a stuck checker cannot hold the patch lock forever), and a worker idle for `idleMs` is stopped
 * to give its memory back (the next check is cold again).
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { LivepatchError } from '../../shared/errors';
import type { CheckProgress } from '../../shared/typecheck';
import type { CheckerRequest, CheckerResponse, CheckerResult, CheckerWorkerData } from './checker-protocol';

interface Pending {
  resolve: (r: CheckerResult) => void;
  reject: (e: Error) => void;
  onProgress?: (p: CheckProgress) => void;
}

/** One checker worker per project, started on first use. */
export class CheckerClient {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly data: CheckerWorkerData,
    private readonly limits: { maxOldGenerationSizeMb?: number; checkTimeoutMs?: number; idleMs?: number } = {},
  ) {}

  /** Whether the worker is running (it starts on the first request). */
  get started(): boolean {
    return this.worker !== undefined;
  }

  /** Check the overlay and transpile `req.transpile`; rejects with a LivepatchError. */
  run(req: Omit<CheckerRequest, 'id'>, onProgress?: (p: CheckProgress) => void): Promise<CheckerResult> {
    if (this.closed) return Promise.reject(new LivepatchError('LP_ERR_INTERNAL', 'The checker is closed'));
    const id = this.nextId++;
    const worker = this.ensureWorker();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const timeoutMs = this.limits.checkTimeoutMs ?? 300_000;
    const timer = setTimeout(() => {
      process.stderr.write(`livepatch: type check took over ${timeoutMs} ms; restarting the checker\n`);
      void worker.terminate();
    }, timeoutMs);
    timer.unref();
    return new Promise<CheckerResult>((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        this.armIdle();
      };
      this.pending.set(id, {
        resolve: (r) => (settle(), resolve(r)),
        reject: (e) => (settle(), reject(e)),
        onProgress,
      });
      // The worker handles messages in order, so queuing is simply posting.
      worker.postMessage({ ...req, id } satisfies CheckerRequest);
    });
  }

  /** Stop an idle worker after `idleMs` so its program's memory goes back to the host. */
  private armIdle(): void {
    if (this.pending.size > 0 || !this.worker) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const w = this.worker;
    this.idleTimer = setTimeout(() => {
      if (this.worker === w && this.pending.size === 0) {
        this.worker = undefined;
        void w.terminate();
      }
    }, this.limits.idleMs ?? 15 * 60_000);
    this.idleTimer.unref();
  }

  /** Stop the worker; pending requests are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const w = this.worker;
    this.worker = undefined;
    this.failAll('The checker was closed');
    if (w) await w.terminate();
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(join(__dirname, 'checker-worker.js'), {
      workerData: this.data,
      resourceLimits: { maxOldGenerationSizeMb: this.limits.maxOldGenerationSizeMb ?? 2048 },
      // The checker must not inherit the host's preloads (livepatch/register would start a second agent).
      execArgv: [],
      stdout: false,
      stderr: false,
    });
    // An idle checker must not keep the host process alive.
    worker.unref();
    worker.on('message', (msg: CheckerResponse) => this.onMessage(msg));
    worker.on('error', (err) => {
      process.stderr.write(`livepatch: checker worker failed: ${err.message}\n`);
    });
    worker.on('exit', () => {
      // Only the current worker's exit fails pending checks: an idle worker stopped earlier may exit
      // after a new one has taken requests.
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.failAll('The checker worker stopped; retry the operation');
    });
    this.worker = worker;
    return worker;
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
    if (msg.type === 'result') p.resolve(msg);
    else p.reject(new LivepatchError(msg.code, msg.message));
  }

  private failAll(message: string): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new LivepatchError('LP_ERR_INTERNAL', message));
    }
  }
}
