/**
 * Whether REPL input is unfinished (an open brace, bracket, template or a trailing operator), so the
 * line editor keeps reading lines instead of sending it. Decided by TypeScript's parser: input is
 * incomplete when a parse error sits at its very end.
 */
import * as ts from 'typescript';

/** Parse errors that mean "there is more to come" when they sit at the end of the input. */
const UNTERMINATED_STRING = 1002;

/** True when `text` should be continued on the next line. */
export function isIncomplete(text: string): boolean {
  const body = text.trimEnd();
  if (!body) return false;
  if (body.endsWith('\\')) return true;
  const sf = ts.createSourceFile('repl.ts', body, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
  const diags = (sf as unknown as { parseDiagnostics?: ts.Diagnostic[] }).parseDiagnostics ?? [];
  // A string left open at the end of a line is an error (as in Node's REPL); everything else that
  // fails at the very end just needs more input.
  return diags.some((d) => d.code !== UNTERMINATED_STRING && d.start !== undefined && d.start >= body.length);
}
