/**
 * Main-thread side of the REPL type check: a client of the project's one type-check service
 * (server/pipeline/checker-client.ts), the same process and program the pipeline checks patches
 * with. The service starts on first use, never keeps the host alive, exits when idle and is started
 * again by the next check.
 */
import { join, resolve } from 'node:path';
import { LivepatchError } from '../../shared/errors';
import type { Diagnostic } from '../../shared/patch';
import { acquireChecker, type CheckerLease, type CheckerLimits } from '../pipeline/checker-client';
import type { CheckRequest } from './check-protocol';

/** A cold check loads the TypeScript program: allow for it, but never wait forever. */
const CHECK_TIMEOUT_MS = 60_000;

/** Type-checks session files in the shared type-check service. */
export class ReplChecker {
  #lease: CheckerLease | undefined;
  #closed = false;

  /** `root`'s service (tsconfig at `<root>/tsconfig.json`); `limits` apply if the REPL is its first user. */
  constructor(
    private readonly root: string,
    private readonly limits?: CheckerLimits,
  ) {}

  /** Diagnostics of the new input in `req.file`; rejects with LP_ERR_INTERNAL if the service fails. */
  check(req: Omit<CheckRequest, 'type' | 'id'>): Promise<Diagnostic[]> {
    if (this.#closed) return Promise.reject(new LivepatchError('LP_ERR_INTERNAL', 'the REPL type checker is closed'));
    const root = resolve(this.root);
    this.#lease ??= acquireChecker({ root, tsconfig: join(root, 'tsconfig.json') }, this.limits);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LivepatchError('LP_ERR_INTERNAL', 'the REPL type checker did not answer in time')),
        CHECK_TIMEOUT_MS,
      );
      timer.unref();
    });
    const run = this.#lease.client.checkRepl(req).catch((e: unknown) => {
      throw e instanceof LivepatchError && /out of memory/.test(e.message)
        ? e
        : new LivepatchError('LP_ERR_INTERNAL', 'the REPL type checker failed');
    });
    return Promise.race([run, timeout]).finally(() => clearTimeout(timer));
  }

  /** Forget a closed session's virtual file (the service holds no per-session state: nothing to do). */
  drop(_file: string): void {}

  /** Release the service (it stops when the pipeline has released it too). */
  async close(): Promise<void> {
    this.#closed = true;
    const l = this.#lease;
    this.#lease = undefined;
    await l?.release();
  }
}
