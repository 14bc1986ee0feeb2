/**
 * Where CLI output goes and how failures become exit codes. Results go to stdout (human text, or a
 * single JSON document under --json); notes, diagnostics and errors go to stderr as `livepatch: ...`
 * lines, never a stack trace. Under --json an error is also printed on stdout as
 * `{"error": {code, message, retryable}}` (plus `diagnostics` when the agent sent type errors), so a
 * script can always parse stdout.
 */
import { LivepatchError, exitCodeFor, type ExitCode, type WireError } from '../../shared';
import { diagnosticsOf, formatDiagnostics } from '../format';

/**
 * Exit quietly when the reader of stdout or stderr goes away (`livepatch versions ... | head -1`):
 * an EPIPE is not an error of ours and must not print a stack trace.
 */
export function installPipeGuard(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
}

/** Print a JSON document on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** A note for humans on stderr (`livepatch: ...`). */
export function note(text: string): void {
  process.stderr.write(`livepatch: ${text}\n`);
}

export { diagnosticsOf };

/**
 * Any throwable → a LivepatchError (unknown ones become LP_ERR_INTERNAL, message kept, no stack).
 * A connection the agent closed with 1009 means our message was over its frame limit: say that,
 * as the usage error it is, instead of a retryable "connection closed".
 */
export function asLivepatchError(err: unknown): LivepatchError {
  if (err instanceof LivepatchError) {
    if (err.code === 'LP_ERR_CONN_CLOSED' && /\(1009\b/.test(err.message)) {
      return new LivepatchError(
        'LP_ERR_LIMIT_FRAME',
        "the request is larger than the agent accepts in one message (it closed the connection with 1009): split the patch set, or raise the agent's maxPayload",
      );
    }
    return err;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new LivepatchError('LP_ERR_INTERNAL', `unexpected error: ${message}`);
}

/** The `{code, message, retryable}` triple for JSON output (details stay out: they may be large). */
export function wireOf(err: LivepatchError): WireError {
  // `details` as the agent sent them (e.g. the signing key id, the conflicting modules): scripts read them.
  return { code: err.code, message: err.message, retryable: err.retryable, ...(err.details !== undefined ? { details: err.details } : {}) };
}

/**
 * Report a failure and return its exit code: diagnostics in tsc form and a one-line message on
 * stderr; under --json also the error object on stdout (with `extra` fields merged in).
 */
export function reportError(err: unknown, json: boolean, extra: Record<string, unknown> = {}): ExitCode {
  const e = asLivepatchError(err);
  const diags = diagnosticsOf(e);
  if (diags.length) process.stderr.write(formatDiagnostics(diags));
  note(e.message);
  if (json) printJson({ error: wireOf(e), ...(diags.length ? { diagnostics: diags } : {}), ...extra });
  return exitCodeFor(e.code);
}

/** Run a command body: its return value is the exit code; any throw is reported and mapped. */
export async function runCommand(json: boolean, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    return reportError(err, json);
  }
}
