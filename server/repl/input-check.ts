/**
 * The REPL's type check, run inside the type-check service process (server/pipeline/checker-worker.ts)
 * on the same ProgramChecker as the pipeline's checks: one tsconfig, one set of parsed files, one
 * process, one heap cap and idle policy for both.
 *
 * The input is checked as the end of a session's virtual file (accumulated declarations + the new
 * input) next to the prelude that types `mod(id)`, with the sources of patched modules at the
 * session's generation laid over the disk. Only the session file's diagnostics that fall inside the
 * new input are returned, with lines relative to the input.
 */
import * as ts from 'typescript';
import type { Diagnostic, DiagnosticCategory } from '../../shared/patch';
import type { ProgramChecker } from '../../shared/typecheck';
import type { CheckRequest } from './check-protocol';

/** TS codes that only say "top-level await needs an ES module target"; the REPL runs it anyway. */
const IGNORED = new Set([1375, 1378, 1431, 1432]);

const CATEGORY: Record<ts.DiagnosticCategory, DiagnosticCategory> = {
  [ts.DiagnosticCategory.Warning]: 'warning',
  [ts.DiagnosticCategory.Error]: 'error',
  [ts.DiagnosticCategory.Suggestion]: 'suggestion',
  [ts.DiagnosticCategory.Message]: 'message',
};

function toDiagnostic(d: ts.Diagnostic, file: ts.SourceFile, inputStart: number, inputLine: number): Diagnostic {
  const out: Diagnostic = {
    file: '<repl>',
    code: d.code,
    category: CATEGORY[d.category],
    message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
  };
  if (d.start !== undefined) {
    const pos = file.getLineAndCharacterOfPosition(Math.max(d.start, inputStart));
    out.line = pos.line - inputLine + 1;
    out.column = pos.character + 1;
  }
  return out;
}

/** Diagnostics of the new input in `req.file` (the REPL files are the program's roots). */
export function checkReplInput(checker: ProgramChecker, req: Omit<CheckRequest, 'type' | 'id'>): Diagnostic[] {
  const overlay = new Map(Object.entries(req.files).map(([f, o]) => [f, o.text]));
  const roots = Object.keys(req.files).filter((f) => f.includes('__livepatch_repl'));
  if (!roots.includes(req.file)) roots.push(req.file);
  const r = checker.checkScript(overlay, roots, req.file);
  if (!r) return [{ code: 0, category: 'error', message: 'REPL input could not be loaded for checking' }];
  const inputLine = r.sourceFile.getLineAndCharacterOfPosition(req.inputStart).line;
  return r.diagnostics
    .filter((d) => !IGNORED.has(d.code) && (d.start === undefined || (d.start >= req.inputStart && d.start < req.inputEnd)))
    .map((d) => toDiagnostic(d, r.sourceFile, req.inputStart, inputLine));
}
