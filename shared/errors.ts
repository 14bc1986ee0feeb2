/**
 * The one error registry shared by agent and clients.
 *
 * Every failure that crosses the wire carries one of these codes. Each entry says what the code means,
 * whether retrying can help, and which CLI exit code it maps to (0 ok, 1 rejected, 2 usage,
 * 3 auth/permission, 4 connect/timeout, 5 conflict, 6 committed then reverted by the watch). `docs/errors.md` lists the same codes; a test keeps
 * the two in sync. Stack traces never go on the wire: `toWire()` sends code, message, retryable, details.
 */

export const EXIT = {
  OK: 0,
  REJECTED: 1,
  USAGE: 2,
  AUTH: 3,
  CONNECT: 4,
  CONFLICT: 5,
  /** Committed, then reverted by the watch (`apply --watch`). */
  WATCH_REVERTED: 6,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

interface ErrorSpec {
  readonly message: string;
  readonly retryable: boolean;
  readonly exit: ExitCode;
}

function spec(message: string, exit: ExitCode, retryable = false): ErrorSpec {
  return { message, exit, retryable };
}

export const ERRORS = {
  // Protocol: the message itself was wrong.
  LP_ERR_PROTO_BAD_JSON: spec('Message is not valid JSON', EXIT.USAGE),
  LP_ERR_PROTO_BAD_MESSAGE: spec('Message does not match the protocol schema', EXIT.USAGE),
  LP_ERR_PROTO_VERSION: spec('Protocol version not supported by this agent or client', EXIT.CONNECT),
  LP_ERR_OP_UNKNOWN: spec('Unknown op', EXIT.USAGE),
  LP_ERR_OP_BAD_ARGS: spec('Op arguments are invalid', EXIT.USAGE),
  // Authentication and authorisation.
  LP_ERR_AUTH_REQUIRED: spec('Authentication required', EXIT.AUTH),
  LP_ERR_AUTH_DENIED: spec('Authentication failed', EXIT.AUTH),
  LP_ERR_AUTH_LOCKED: spec('Too many failed attempts from this address; try again later', EXIT.AUTH, true),
  LP_ERR_AUTH_ORIGIN: spec('Cross-origin connections are refused', EXIT.AUTH),
  LP_ERR_AUTH_FORBIDDEN: spec("The token's role does not allow this op", EXIT.AUTH),
  LP_ERR_AUTH_NO_TOKEN: spec('No token: set LIVEPATCH_TOKEN or pass --token-file', EXIT.AUTH),
  // Connection.
  LP_ERR_CONN_REFUSED: spec('Cannot connect to the agent', EXIT.CONNECT, true),
  LP_ERR_CONN_TIMEOUT: spec('Timed out talking to the agent', EXIT.CONNECT, true),
  LP_ERR_CONN_CLOSED: spec('Connection to the agent closed', EXIT.CONNECT, true),
  // Limits.
  LP_ERR_LIMIT_FRAME: spec('Message too large', EXIT.USAGE),
  LP_ERR_LIMIT_INFLIGHT: spec('Too many ops in flight on this connection', EXIT.CONNECT, true),
  LP_ERR_LIMIT_CONNECTIONS: spec('Too many connections to the agent', EXIT.CONNECT, true),
  // Patching.
  LP_ERR_PATCH_TYPE: spec('Patch does not type-check against the live program', EXIT.REJECTED),
  LP_ERR_PATCH_SYNTAX: spec('Patch has a syntax error', EXIT.REJECTED),
  LP_ERR_PATCH_LOAD: spec('A patched module failed while loading', EXIT.REJECTED),
  LP_ERR_PATCH_TIMEOUT: spec('A patched module did not finish loading in time', EXIT.REJECTED),
  LP_ERR_PATCH_VERIFY: spec('A verify hook vetoed the patch', EXIT.REJECTED),
  LP_ERR_PATCH_MIGRATE: spec('A state migration failed', EXIT.REJECTED),
  LP_ERR_PATCH_CONFLICT: spec('The live program changed since this patch was prepared', EXIT.CONFLICT, true),
  LP_ERR_PATCH_BUSY: spec('Another patch is being applied', EXIT.CONFLICT, true),
  LP_ERR_PATCH_UNKNOWN_MODULE: spec('Not a live module', EXIT.REJECTED),
  LP_ERR_PATCH_NO_SOURCES: spec('Project sources or tsconfig are not available where the agent runs; patching is disabled', EXIT.REJECTED),
  LP_ERR_PATCH_DUPLICATE: spec('This patch id was already applied', EXIT.CONFLICT),
  LP_ERR_PATCH_STAGE_UNKNOWN: spec('No staged patch with that id (expired, committed or aborted)', EXIT.CONFLICT),
  LP_ERR_PATCH_EXPORT_KIND: spec('An export changed kind (function, class, value) between versions', EXIT.REJECTED),
  LP_ERR_PATCH_UNREACHABLE: spec('The patch changes code that a commit could not reach in the running program', EXIT.REJECTED),
  LP_ERR_PATCH_EFFECT: spec(
    'A patched module starts something at its top level (listen, timers, listeners, exit, globals) that would run a second time',
    EXIT.REJECTED,
  ),
  LP_ERR_PATCH_UNSIGNED: spec('This agent accepts only signed patch sets, and this one is not signed', EXIT.REJECTED),
  LP_ERR_PATCH_BAD_SIGNATURE: spec("The patch set's signature is not valid, or its key is not trusted by this agent", EXIT.REJECTED),
  LP_ERR_PATCH_JS_MISMATCH: spec(
    "The patch set's compiled JavaScript is not what its sources compile to on this machine (--check-here): another TypeScript version or tsconfig, or changed after signing",
    EXIT.REJECTED,
  ),
  LP_ERR_PATCH_NOT_LIVE: spec('The module is loaded by the app but is not a live module', EXIT.REJECTED),
  LP_ERR_ROLLBACK_TARGET: spec('No such generation to roll back to', EXIT.REJECTED),
  LP_ERR_PATCH_QUARANTINED: spec(
    'The patch is quarantined: its host crashed soon after applying it (see livepatch quarantine)',
    EXIT.REJECTED,
  ),
  LP_ERR_QUARANTINE_UNKNOWN: spec('No quarantined patch with that id', EXIT.REJECTED),
  LP_ERR_JOURNAL_UNREADABLE: spec('The journal holds lines that cannot be read; they were not replayed', EXIT.REJECTED),
  LP_ERR_CLUSTER_NONE: spec('This agent does not run a cluster primary with workers', EXIT.USAGE),
  LP_ERR_CLUSTER_WORKER: spec('A cluster worker exited during the operation; the patch was committed nowhere', EXIT.REJECTED, true),
  // Watch after a commit (`apply --watch`).
  LP_ERR_WATCH_REVERTED: spec('Committed, then reverted by the watch: a health threshold was crossed', EXIT.WATCH_REVERTED),
  // Eval / REPL.
  // Fleets in etcd (docs/fleet.md).
  LP_ERR_FLEET_URL: spec('Invalid fleet address or fleet credentials (etcd://HOST:PORT/NAME, LIVEPATCH_FLEET_*)', EXIT.USAGE),
  LP_ERR_FLEET_UNREACHABLE: spec("Cannot reach the fleet's etcd", EXIT.CONNECT, true),
  LP_ERR_FLEET_DENIED: spec('etcd refused the fleet operation (authentication or permission)', EXIT.AUTH),
  LP_ERR_FLEET_NO_MEMBERS: spec('The fleet has no live members to check the patch', EXIT.REJECTED, true),
  LP_ERR_FLEET_STAGE_FAILED: spec('A fleet member could not stage the patch; nothing was committed', EXIT.REJECTED),
  LP_ERR_FLEET_DEADLINE: spec(
    'The rollout was not decided before its deadline and was aborted; nothing was committed',
    EXIT.REJECTED,
    true,
  ),
  LP_ERR_FLEET_CONFLICT: spec(
    'The fleet changed under the rollout (another rollout was decided, or the rollout was aborted)',
    EXIT.CONFLICT,
    true,
  ),
  LP_ERR_FLEET_CANARY_FAILED: spec('The canary check failed: the canaries were rolled back and the rest never committed', EXIT.REJECTED),
  LP_ERR_FLEET_RECORD: spec('A fleet record in etcd is malformed or too large', EXIT.REJECTED),
  LP_ERR_FLEET_JOIN: spec(
    "This agent could not apply the fleet's committed patches when it joined; it serves its deployed code and is flagged diverged",
    EXIT.REJECTED,
  ),
  LP_ERR_EVAL_TYPE: spec('Expression does not type-check', EXIT.REJECTED),
  LP_ERR_EVAL_THROWN: spec('Expression threw', EXIT.REJECTED),
  LP_ERR_EVAL_TIMEOUT: spec('Evaluation timed out', EXIT.REJECTED),
  LP_ERR_EVAL_SIDE_EFFECT: spec('Expression may have side effects; only admins may run it', EXIT.AUTH),
  LP_ERR_EVAL_SESSION: spec('No such REPL session', EXIT.USAGE),
  // Audit.
  LP_ERR_AUDIT_BROKEN: spec('The audit log chain is broken', EXIT.REJECTED),
  // Command line (never on the wire: the CLI's own failures, so --json errors still carry a code).
  LP_ERR_CLI_USAGE: spec('Invalid command-line arguments or input files', EXIT.USAGE),
  // Internal.
  LP_ERR_INTERNAL: spec('Internal agent error (logged on the agent)', EXIT.REJECTED, true),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;
export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

/** The error shape on the wire. */
export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  details?: unknown;
}

/** An error with a registry code; thrown on both sides, serialised by `toWire()`. */
export class LivepatchError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details?: unknown;

  constructor(code: ErrorCode, message?: string, details?: unknown, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].message, options);
    this.name = 'LivepatchError';
    this.code = code;
    this.retryable = ERRORS[code].retryable;
    if (details !== undefined) this.details = details;
  }

  get exitCode(): ExitCode {
    return ERRORS[this.code].exit;
  }

  toWire(): WireError {
    const w: WireError = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.details !== undefined) w.details = this.details;
    return w;
  }

  static fromWire(w: WireError): LivepatchError {
    const code = isErrorCode(w.code) ? w.code : 'LP_ERR_INTERNAL';
    return new LivepatchError(code, w.message, w.details);
  }
}

export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(ERRORS, x);
}

/** Anything thrown → a wire error. Unknown throwables become LP_ERR_INTERNAL with no stack. */
export function toWireError(err: unknown): WireError {
  if (err instanceof LivepatchError) return err.toWire();
  return { code: 'LP_ERR_INTERNAL', message: ERRORS.LP_ERR_INTERNAL.message, retryable: true };
}

export function exitCodeFor(code: ErrorCode): ExitCode {
  return ERRORS[code].exit;
}
