/**
 * How eval results and failures are printed by `livepatch eval` and `livepatch repl`: captured console
 * lines first (warn/error marked), then the value; type errors in tsc's one-line form; a thrown value
 * as `Uncaught <message>`. Pure string functions, so they are shared and easy to test.
 */
import { formatDiagnostic, LivepatchError, type EvalResult } from '../../shared';
import { diagnosticsOf } from '../format';

/** The console lines of a result, one per entry, warn/error prefixed. */
export function formatConsole(r: Pick<EvalResult, 'console'>): string {
  return r.console.map((c) => (c.level === 'warn' || c.level === 'error' ? `[${c.level}] ${c.text}` : c.text) + '\n').join('');
}

/** Console lines, then the rendered value, then a note when something was cut. */
export function formatResult(r: EvalResult): string {
  let out = formatConsole(r) + r.output + '\n';
  if (r.truncated) out += '(output truncated)\n';
  return out;
}

/** A failure as the REPL shows it. */
export function formatEvalError(err: unknown): string {
  if (!(err instanceof LivepatchError)) return `error: ${err instanceof Error ? err.message : String(err)}\n`;
  switch (err.code) {
    case 'LP_ERR_EVAL_TYPE':
      return (
        diagnosticsOf(err)
          .map((d) => formatDiagnostic(d) + '\n')
          .join('') || `${err.message}\n`
      );
    case 'LP_ERR_EVAL_THROWN': {
      const consoleLines = (err.details as { console?: EvalResult['console'] } | undefined)?.console;
      return (consoleLines ? formatConsole({ console: consoleLines }) : '') + `Uncaught ${err.message}\n`;
    }
    default:
      return `${err.code}: ${err.message}\n`;
  }
}
