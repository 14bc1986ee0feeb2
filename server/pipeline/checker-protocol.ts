/**
 * Messages between the host (checker-client.ts) and the type-check service process
 * (checker-worker.ts). Kept in their own file so both sides agree on one shape.
 */
import type { ErrorCode } from '../../shared/errors';
import type { CheckerEngineSetting } from '../../shared/ops';
import type { Diagnostic } from '../../shared/patch';
import type { CheckProgress, ProgramCheckResult } from '../../shared/typecheck';
import type { CheckRequest as ReplCheckRequest } from '../repl/check-protocol';

/** What the service process is started with (JSON in LIVEPATCH_CHECKER_CONFIG). */
export interface CheckerWorkerData {
  root: string;
  tsconfig?: string;
  assumeDirectOnly?: boolean;
  /** Where the checker persists its incremental state (shared/typecheck.ts `stateFile`). */
  stateFile?: string;
  /** Which compiler checks whole programs (LIVEPATCH_CHECKER_ENGINE; default 'auto'). */
  engine?: CheckerEngineSetting;
  /** What the service was started for: a REPL input check needs no native compiler (yet). */
  firstRequest?: 'program' | 'repl';
}

/** One whole-program check (and transpile) request, host → service (the pipeline). */
export interface CheckerRequest {
  id: number;
  kind: 'program';
  /** The full overlay: [absolute path, text] of every live-patched module plus the patch set. */
  overlay: [string, string][];
  /** Module ids to transpile to CommonJS when the check passes. */
  transpile: string[];
  /** Verify module source to transpile. */
  verify?: string;
}

/** One REPL input check, host → service (the REPL): the REPL's request with the service's id. */
export type ReplServiceRequest = Omit<ReplCheckRequest, 'type' | 'id'> & { id: number; kind: 'repl' };

/** Anything the service is asked. */
export type ServiceRequest = CheckerRequest | ReplServiceRequest;

/** Service → host: progress of a request, then exactly one result or error. */
export type CheckerResponse =
  | { id: number; type: 'progress'; progress: CheckProgress }
  | { id: number; type: 'repl'; diagnostics: Diagnostic[] }
  | {
      id: number;
      type: 'result';
      check: ProgramCheckResult;
      js: Record<string, string>;
      verifyJs?: string;
      transpileDiagnostics: Diagnostic[];
      /** Why the setting 'auto' fell back to the JavaScript compiler. */
      engineNote?: string;
    }
  | { id: number; type: 'error'; code: ErrorCode; message: string };

/** A successful response: the check, the JS of the requested modules and of the verify module. */
export type CheckerResult = Extract<CheckerResponse, { type: 'result' }>;
