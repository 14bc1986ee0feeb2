/**
 * Messages between the type-check service's main thread (checker-worker.ts) and its native-compiler
 * thread (native-thread.ts).
 */
import type { CheckProgress, ProgramCheckResult } from '../../shared/typecheck';

/** The thread's workerData. `gate`: use the native compiler only if it agrees with the project's build ('auto'). */
export interface NativeThreadData {
  root: string;
  tsconfig?: string;
  gate: boolean;
}

/**
 * One whole-program check: the full overlay, [absolute path, text]. `declarationsChanged`: whether
 * any file whose text differs from the overlay of request `since` may export other declarations
 * (the main thread tells, with the JavaScript compiler); false lets the thread check only the
 * changed files, if its last check was request `since`.
 */
export interface NativeThreadRequest {
  id: number;
  overlay: [string, string][];
  declarationsChanged: boolean;
  since: number;
}

/**
 * `ready` once, first (`off`: why the native compiler is not to be used); then, per request, progress
 * and one answer: the result, or `off` (the native compiler is not to be used from now on: the
 * request is to be checked by the JavaScript compiler).
 */
export type NativeThreadResponse =
  | { type: 'ready'; off?: string }
  | { id: number; type: 'progress'; progress: CheckProgress }
  | { id: number; type: 'result'; result: ProgramCheckResult }
  | { id: number; type: 'off'; off: string };
