/**
 * Main-thread side of the REPL type checker: starts the worker on first use (unref'd, so it never
 * keeps the host alive), correlates requests and replies, and restarts the worker if it dies.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { LivepatchError } from '../../shared/errors';
import type { Diagnostic } from '../../shared/patch';
import type { CheckReply, CheckRequest } from './check-protocol';

/** A cold check loads the TypeScript program: allow for it, but never wait forever. */
const CHECK_TIMEOUT_MS = 60_000;
/** The worker holds the whole program in memory: give it back after this long without a check. */
const IDLE_MS = 10 * 60_000;

interface Pending {
  resolve: (d: Diagnostic[]) => void;
  reject: (e: LivepatchError) => void;
  timer: NodeJS.Timeout;
}

/** Type-checks session files in a worker thread. */
export class ReplChecker {
  #worker: Worker | undefined;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #idle: NodeJS.Timeout | undefined;

  /** Diagnostics of the new input in `req.file`; rejects with LP_ERR_INTERNAL if the worker fails. */
  check(req: Omit<CheckRequest, 'type' | 'id'>): Promise<Diagnostic[]> {
    const worker = this.#ensure();
    clearTimeout(this.#idle);
    const id = this.#nextId++;
    return new Promise<Diagnostic[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new LivepatchError('LP_ERR_INTERNAL', 'the REPL type checker did not answer in time'));
      }, CHECK_TIMEOUT_MS);
      timer.unref();
      this.#pending.set(id, { resolve, reject, timer });
      worker.postMessage({ type: 'check', id, ...req } satisfies CheckRequest);
    });
  }

  /** Forget a closed session's virtual file. */
  drop(file: string): void {
    this.#worker?.postMessage({ type: 'drop', file });
  }

  /** Stop the worker (pending checks fail). */
  async close(): Promise<void> {
    clearTimeout(this.#idle);
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }

  #ensure(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(join(__dirname, 'check-worker.js'));
    w.unref();
    w.on('message', (reply: CheckReply) => {
      const p = this.#pending.get(reply.id);
      if (!p) return;
      this.#pending.delete(reply.id);
      clearTimeout(p.timer);
      if (reply.ok) p.resolve(reply.diagnostics);
      else p.reject(new LivepatchError('LP_ERR_INTERNAL', 'the REPL type checker failed'));
      if (this.#pending.size === 0) {
        this.#idle = setTimeout(() => void this.close(), IDLE_MS);
        this.#idle.unref();
      }
    });
    const fail = () => {
      if (this.#worker === w) this.#worker = undefined;
      for (const [id, p] of this.#pending) {
        this.#pending.delete(id);
        clearTimeout(p.timer);
        p.reject(new LivepatchError('LP_ERR_INTERNAL', 'the REPL type checker stopped'));
      }
    };
    w.on('error', fail);
    w.on('exit', fail);
    this.#worker = w;
    return w;
  }
}
