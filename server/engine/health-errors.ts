/**
 * Uncaught exceptions and unhandled rejections, counted against the generation whose code was running.
 *
 * The generation is the one in the AsyncLocalStorage store (while several generations are live, work
 * carries its generation), else the legacy generation (storeless work started before multi mode),
 * else the current one; a released generation's errors go to the current one. Nothing here changes
 * what the process does with the error: exceptions are seen through `uncaughtExceptionMonitor` (the
 * process still dies, or the app's own handler runs, exactly as before), and `unhandledRejection` is
 * seen by wrapping `process.emit` (adding a listener would stop Node from raising it as a crash).
 */
import { H_REJECTIONS, H_UNCAUGHT } from './health';
import { state, type Generation } from './state';

const HOOKED = Symbol.for('livepatch.engine.errorsHooked');

/** Install once per process; `current` gives the engine's current generation. */
export function installErrorCounting(current: () => Generation): void {
  const proc = process as unknown as Record<string | symbol, unknown>;
  if (proc[HOOKED]) return;
  Object.defineProperty(proc, HOOKED, { value: true });
  const count = (index: number): void => {
    try {
      const g = state.als.getStore() ?? state.legacy;
      const h = g?.health ?? current().health;
      if (h) h[index]!++;
    } catch {
      /* never let counting get in the way of the host's own error handling */
    }
  };
  process.on('uncaughtExceptionMonitor', (_err, origin) => {
    // A rejection nobody handled is raised as an uncaught exception; it was counted when emitted.
    if (origin !== 'unhandledRejection') count(H_UNCAUGHT);
  });
  const emit = process.emit;
  process.emit = function (this: NodeJS.Process, event: string | symbol): boolean {
    if (event === 'unhandledRejection') count(H_REJECTIONS);
    // eslint-disable-next-line prefer-rest-params
    return (emit as (...a: unknown[]) => boolean).apply(this, arguments as unknown as unknown[]);
  } as typeof process.emit;
}
