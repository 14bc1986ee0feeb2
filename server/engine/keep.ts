/**
 * `keep(key, init, opts)`: module state that survives new versions of the module.
 *
 * Called at a live module's top level while it loads. The key is scoped to the module id. The first
 * load stores `init()`; later versions get the same value back. When `opts.shape` differs from the
 * stored shape, `opts.migrate(previous, previousShape)` produces the new value (or `init()` without a
 * migrate). During a stage the new value is held pending and only becomes the kept value at commit,
 * so an aborted stage leaves the live value untouched.
 */
import { fileURLToPath } from 'node:url';
import { LivepatchError } from '../../shared/errors';
import { state, type KeptValue } from './state';

/** Options of `keep`. */
export interface KeepOptions<T> {
  /** Version tag of the value's shape; a change triggers `migrate`. */
  shape?: number | string;
  /** Convert the value kept under the previous shape into the new one. */
  migrate?: (previous: unknown, previousShape: number | string | undefined) => T;
}

type Slot = { value: unknown; shape: number | string | undefined };

/**
 * State kept across versions of the calling module. Only valid at the top level of a live module
 * while it loads (deployed load, patch stage or rollback); in a module that is not live it is `init()`.
 */
export function keep<T>(key: string, init: () => T, opts: KeepOptions<T> = {}): T {
  const ctx = state.evalStack[state.evalStack.length - 1];
  // A module left as it is, even one a live module requires while it loads: as without livepatch.
  if (ctx?.notLive) return init();
  if (!ctx) {
    // Without the engine (app started without livepatch), and in a module the engine left as it is
    // (not live: too large, not parsable, outside the root), modules are plain modules: keep is just
    // init, as it would be without livepatch. Only a live module calling it after its load is told.
    const engine = state.engine as { isLiveFile?(file: string): boolean } | undefined;
    const file = engine?.isLiveFile ? callerFile() : undefined;
    if (file === undefined || !engine!.isLiveFile!(file)) return init();
    throw new Error('livepatch: keep() must be called at the top level of a live module while it loads');
  }
  const pending = ctx.pending?.get(key);
  if (pending) return pending.value as T;
  let perModule = state.kept.get(ctx.id);
  const stored = perModule?.get(key);
  let next: Slot;
  if (!stored) {
    next = { value: init(), shape: opts.shape };
  } else if (opts.shape === undefined || opts.shape === stored.shape) {
    return stored.value as T;
  } else if (opts.migrate) {
    try {
      next = { value: opts.migrate(stored.value, stored.shape), shape: opts.shape };
    } catch (e) {
      const message = `${ctx.id}: migrate of kept "${key}" failed: ${oneLine(e)}`;
      throw new LivepatchError('LP_ERR_PATCH_MIGRATE', message, { module: ctx.id, key, message: oneLine(e) });
    }
  } else {
    next = { value: init(), shape: opts.shape };
  }
  if (ctx.pending) ctx.pending.set(key, next);
  else {
    if (!perModule) state.kept.set(ctx.id, (perModule = new Map<string, KeptValue>()));
    perModule.set(key, next);
  }
  return next.value as T;
}

/** The file of the code that called `keep` (a path, or a file: URL's path), if the stack shows one. */
function callerFile(): string | undefined {
  // Restored as it was: an app's own handler (source-map-support, …) is put back untouched.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const saved = Error.prepareStackTrace;
  const holder: { stack?: unknown } = {};
  try {
    Error.prepareStackTrace = (_e, frames) => frames;
    Error.captureStackTrace(holder, keep);
    const frames = holder.stack as NodeJS.CallSite[] | undefined;
    const name = Array.isArray(frames) ? frames[0]?.getFileName() : undefined;
    if (name === undefined || name === null) return undefined;
    return name.startsWith('file:') ? fileURLToPath(name) : name;
  } catch {
    return undefined;
  } finally {
    Error.prepareStackTrace = saved;
  }
}

/** Make a stage's pending kept values the live ones (called inside the commit step). */
export function commitKept(id: string, pending: ReadonlyMap<string, Slot>): void {
  if (pending.size === 0) return;
  let perModule = state.kept.get(id);
  if (!perModule) state.kept.set(id, (perModule = new Map<string, KeptValue>()));
  for (const [k, v] of pending) perModule.set(k, v);
}

/** The first line of an error's message, never a stack. */
export function oneLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return (msg.split('\n')[0] ?? '').slice(0, 500);
}
