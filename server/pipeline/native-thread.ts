/**
 * A worker thread of the type-check service (checker-worker.ts) that owns the native checker
 * (shared/native-typecheck.ts), whose API blocks its thread while the native compiler works. Run on
 * its own thread, the native compiler builds the program as it is on disk while the service's main
 * thread loads the JavaScript compiler (still needed to transpile), so a new service's first check
 * pays for the longer of the two instead of both.
 *
 * Under 'auto' (`gate`) the native compiler must agree with how the project builds: no tsconfig
 * setting it dropped or resolves differently, no option or syntax error in the program on disk, and,
 * the first time a check finds an error, none in the program on disk either (the project was built
 * by the JavaScript compiler, which found none there). Otherwise the thread answers `off`, with why,
 * and the service checks with the JavaScript compiler from then on.
 *
 * Protocol (native-protocol.ts): `ready` first, then one answer per check, in order.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { NativeChecker } from '../../shared/native-typecheck';
import { formatDiagnostic, type Diagnostic } from '../../shared/patch';
import type { NativeThreadData, NativeThreadRequest, NativeThreadResponse } from './native-protocol';

const data = workerData as NativeThreadData;
const checker = new NativeChecker(data.root, data.tsconfig);

function post(msg: NativeThreadResponse): void {
  parentPort?.postMessage(msg);
}

const message = (err: unknown): string => (err as Error)?.message ?? String(err);

/** Why the native compiler disagrees with the project's build, given the errors it found on disk. */
function disagreement(errors: Diagnostic[]): string | undefined {
  if (errors.length === 0) return undefined;
  const count = `${errors.length} error${errors.length === 1 ? '' : 's'}`;
  return `the native compiler reports ${count} in the unpatched program (${formatDiagnostic(errors[0]!)})`;
}

const errorsOf = (ds: Diagnostic[]): Diagnostic[] => ds.filter((d) => d.category === 'error');

/** Start the compiler and build the program on disk; why not to use it, or undefined. */
function prepare(): string | undefined {
  if (data.gate) {
    const setting = checker.incompatibility();
    if (setting !== undefined) return `the project's tsconfig has ${setting}`;
  }
  const errors = errorsOf(checker.open());
  return data.gate ? disagreement(errors) : undefined;
}

let off: string | undefined;
/** Whether a check has shown that the program on disk has no error for this compiler. */
let agrees = !data.gate;

function stop(why: string): void {
  off = why;
  checker.close();
}

try {
  const why = prepare();
  if (why !== undefined) stop(why);
} catch (err) {
  stop(`the native compiler failed: ${message(err)}`);
}
post({ type: 'ready', ...(off !== undefined ? { off } : {}) });

function check(req: NativeThreadRequest): NativeThreadResponse {
  const result = checker.check(new Map(req.overlay), (progress) => post({ id: req.id, type: 'progress', progress }));
  if (!agrees && result.hasErrors) {
    // Are these errors the patch's, or does this compiler find errors in the program as built too?
    const why = disagreement(errorsOf(checker.check(new Map()).diagnostics));
    if (why !== undefined) {
      stop(why);
      return { id: req.id, type: 'off', off: why };
    }
    agrees = true;
  }
  return { id: req.id, type: 'result', result };
}

parentPort?.on('message', (req: NativeThreadRequest) => {
  if (off !== undefined) return post({ id: req.id, type: 'off', off });
  try {
    post(check(req));
  } catch (err) {
    stop(`the native compiler failed: ${message(err)}`);
    post({ id: req.id, type: 'off', off: off! });
  }
});
