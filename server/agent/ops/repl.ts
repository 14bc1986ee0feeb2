/**
 * REPL and admin ops: eval, repl-open, repl-close (handed to the REPL service with the caller's role,
 * which restricts read/patch tokens to side-effect-free code) and audit-verify.
 */
import { LivepatchError } from '../../../shared/errors';
import { sha256 } from '../../../shared/hash';
import type { OpName } from '../../../shared/ops';
import type { ReplCallContext, ReplService } from '../context';
import { verifyAuditFile } from '../audit';
import type { Handler, OpCall } from './types';

/** The audit record keeps the expression, cut to this many characters. */
const MAX_AUDITED_CODE = 8192;

function replOf(call: OpCall<OpName>): ReplService {
  try {
    return call.ctx.repl();
  } catch (e) {
    if (e instanceof LivepatchError) throw e;
    process.stderr.write(`livepatch: REPL unavailable: ${(e as Error).message}\n`);
    throw new LivepatchError('LP_ERR_INTERNAL', 'the REPL service is not available in this agent');
  }
}

function callerOf(call: OpCall<OpName>): ReplCallContext {
  return { who: call.session.who, role: call.session.principal!.role, connectionId: call.session.id };
}

export const evalOp: Handler<'eval'> = (call) => {
  // Who ran what: the expression (cut) and its hash go into the audit record.
  call.audit.hashes = { code: sha256(call.args.code) };
  call.audit.detail = call.args.code.slice(0, MAX_AUDITED_CODE);
  const { code, session, timeoutMs } = call.args;
  call.audit.session = session ?? `default@${call.session.id}`;
  return replOf(call).eval(
    { code, ...(session !== undefined ? { session } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) },
    callerOf(call),
  );
};

export const replOpen: Handler<'repl-open'> = (call) => ({ session: replOf(call).open(callerOf(call), call.args.generation) });

export const replClose: Handler<'repl-close'> = (call) => {
  replOf(call).close(call.args.session, callerOf(call));
  return { closed: true };
};

export const auditVerify: Handler<'audit-verify'> = ({ ctx }) => verifyAuditFile(ctx.audit.path, ctx.audit.head);
