/**
 * How the pipeline reports: progress to the caller (never allowed to break a patch), the combined
 * diagnostics of a check, and the LP_ERR_PATCH_TYPE / _SYNTAX rejections with a one-line summary in
 * tsc's form and the structured diagnostics in `details`.
 */
import { LivepatchError } from '../../shared/errors';
import { formatDiagnostic, type Diagnostic } from '../../shared/patch';
import type { CheckerResult } from './checker-protocol';
import type { OpContext, Progress } from './types';

/** Diagnostics sent back at most (a broken patch can produce thousands). */
export const MAX_DIAGNOSTICS = 500;

/** Report progress; a failing listener (e.g. a closed socket) is ignored. */
export function progress(ctx: OpContext, p: Progress): void {
  try {
    ctx.onProgress?.(p);
  } catch {
    // A listener (e.g. a closed socket) must not break the patch.
  }
}

/** The program's diagnostics plus transpile-only ones not already in it. */
export function allDiagnostics(r: CheckerResult): Diagnostic[] {
  return [
    ...r.check.diagnostics,
    ...r.transpileDiagnostics.filter((d) => !r.check.diagnostics.some((c) => c.file === d.file && c.code === d.code && c.line === d.line)),
  ];
}

/** Whether any diagnostic is an error (warnings and suggestions do not refuse a patch). */
export function hasError(ds: Diagnostic[]): boolean {
  return ds.some((d) => d.category === 'error');
}

/** A type or syntax rejection carrying the diagnostics (capped). */
export function rejection(code: 'LP_ERR_PATCH_SYNTAX' | 'LP_ERR_PATCH_TYPE', what: string, diagnostics: Diagnostic[]): LivepatchError {
  const first = diagnostics[0];
  const n = diagnostics.length;
  const summary = `${n} ${what}${n === 1 ? '' : 's'}${first ? `; first: ${formatDiagnostic(first)}` : ''}`;
  return new LivepatchError(code, summary, { diagnostics: diagnostics.slice(0, MAX_DIAGNOSTICS) });
}
