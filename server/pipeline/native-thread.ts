/**
 * A worker thread of the type-check service (checker-worker.ts) that owns the native checker
 * (shared/native-typecheck.ts), whose API blocks its thread while the native compiler works. Run on
 * its own thread, the native compiler builds and checks the program as it is on disk while the
 * service's main thread loads the JavaScript compiler (still needed to transpile), so a new
 * service's first check pays for the longer of the two instead of both, and then only checks the
 * files the patch changed (when their declarations are the same).
 *
 * Under 'auto' (`gate`) the native compiler must agree with how the project builds: no tsconfig
 * setting it dropped or reads differently, and no error in the program as it is on disk (the project
 * was built by the JavaScript compiler, which found none there). Otherwise the thread answers `off`,
 * with why, and the service checks with the JavaScript compiler from then on.
 *
 * Protocol (native-protocol.ts): `ready` first, then one answer per check, in order.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { NativeChecker } from '../../shared/native-typecheck';
import { formatDiagnostic, type Diagnostic } from '../../shared/patch';
import type { CheckProgress } from '../../shared/typecheck';
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

/** Start the compiler and check the program on disk; why not to use it, or undefined. */
function prepare(): string | undefined {
  if (data.gate) {
    const setting = checker.incompatibility();
    if (setting !== undefined) return `the project's tsconfig has ${setting}`;
  }
  const errors = errorsOf(checker.check(new Map()).diagnostics);
  return data.gate ? disagreement(errors) : undefined;
}

let off: string | undefined;
/** The request whose overlay the compiler holds now (0: none, the disk's). */
let holding = 0;

try {
  off = prepare();
} catch (err) {
  off = `the native compiler failed: ${message(err)}`;
}
if (off !== undefined) checker.close();
post({ type: 'ready', ...(off !== undefined ? { off } : {}) });

function check(req: NativeThreadRequest): NativeThreadResponse {
  // The main thread compared this overlay with request `since`'s: only if that is what the compiler holds.
  const declarationsChanged = req.declarationsChanged || req.since !== holding;
  const onProgress = (progress: CheckProgress) => post({ id: req.id, type: 'progress', progress });
  const result = checker.check(new Map(req.overlay), onProgress, { declarationsChanged });
  holding = req.id;
  return { id: req.id, type: 'result', result };
}

parentPort?.on('message', (req: NativeThreadRequest) => {
  if (off !== undefined) return post({ id: req.id, type: 'off', off });
  try {
    post(check(req));
  } catch (err) {
    off = `the native compiler failed: ${message(err)}`;
    checker.close();
    post({ id: req.id, type: 'off', off });
  }
});
