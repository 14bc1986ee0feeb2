/**
 * One frame from an authenticated client → exactly one reply.
 *
 * Order matters: parse defensively (depth, forbidden keys), validate the envelope, bound in-flight
 * ops, know the op, validate its args, check the role — all before any handler runs, so a bad or
 * denied request changes nothing. Handler failures become wire errors without stacks; unexpected ones
 * are logged on the agent. Nothing here throws into the socket's event handler.
 */
import { LivepatchError } from '../../shared/errors';
import { issuesOf, parseFrame, requestMessageSchema, type RequestId } from '../../shared/messages';
import { OPS, isOpName, type OpName } from '../../shared/ops';
import { roleAllows } from '../../shared/auth';
import type { AuditEntry } from './audit';
import type { AgentContext } from './context';
import { HANDLERS } from './ops';
import type { Handler, OpCall } from './ops/types';
import type { ClientConnection } from './client-connection';

/** Handle one client frame after authentication. Never throws, never rejects. */
export function dispatchFrame(ctx: AgentContext, session: ClientConnection, text: string): void {
  const parsed = parseFrame(text);
  if (!parsed.ok) {
    const code = parsed.kind === 'not-json' ? 'LP_ERR_PROTO_BAD_JSON' : 'LP_ERR_PROTO_BAD_MESSAGE';
    session.replyError(null, new LivepatchError(code, `bad frame: ${parsed.reason}`));
    return;
  }
  const req = requestMessageSchema.safeParse(parsed.value);
  if (!req.success) {
    session.replyError(
      null,
      new LivepatchError('LP_ERR_PROTO_BAD_MESSAGE', 'expected {type:"request", id, op, args}', { issues: issuesOf(req.error) }),
    );
    return;
  }
  const { id, op, args } = req.data;
  if (session.inflight.has(id)) {
    // Replying under this id would give it two replies; the duplicate is answered with id null.
    session.replyError(
      null,
      new LivepatchError('LP_ERR_PROTO_BAD_MESSAGE', `request id ${JSON.stringify(id)} is already in flight`, { id }),
    );
    return;
  }
  if (session.inflight.size >= ctx.opts.maxInflight) {
    session.replyError(
      id,
      new LivepatchError('LP_ERR_LIMIT_INFLIGHT', `at most ${ctx.opts.maxInflight} ops may be in flight per connection`),
    );
    return;
  }
  if (!isOpName(op)) {
    session.replyError(id, new LivepatchError('LP_ERR_OP_UNKNOWN', `unknown op "${op.slice(0, 64)}" (see describe)`));
    return;
  }
  const argsParsed = OPS[op].args.safeParse(args ?? {});
  if (!argsParsed.success) {
    session.replyError(id, new LivepatchError('LP_ERR_OP_BAD_ARGS', `invalid arguments for ${op}`, { issues: issuesOf(argsParsed.error) }));
    return;
  }
  const principal = session.principal!;
  if (!roleAllows(principal.role, OPS[op].role)) {
    ctx.audit.append({
      who: principal.name,
      remote: session.remote,
      op,
      outcome: 'LP_ERR_AUTH_FORBIDDEN',
      detail: `role ${principal.role} < ${OPS[op].role}`,
    });
    session.replyError(
      id,
      new LivepatchError('LP_ERR_AUTH_FORBIDDEN', `${op} needs the ${OPS[op].role} role; token "${principal.name}" has ${principal.role}`),
    );
    return;
  }
  void run(ctx, session, id, op, argsParsed.data);
}

async function run(ctx: AgentContext, session: ClientConnection, id: RequestId, op: OpName, args: unknown): Promise<void> {
  session.inflight.add(id);
  const audit: Partial<AuditEntry> = {};
  const call = { id, args, session, ctx, audit } as OpCall<OpName>;
  let outcome = 'ok';
  let reply: () => void;
  try {
    const handler = HANDLERS[op] as Handler<OpName>;
    const result = await handler(call);
    reply = () => session.replyOk(id, result);
  } catch (e) {
    if (e instanceof LivepatchError) outcome = e.code;
    else {
      outcome = 'LP_ERR_INTERNAL';
      process.stderr.write(`livepatch: internal error in ${op}: ${(e as Error)?.stack ?? String(e)}\n`);
    }
    reply = () => session.replyError(id, e);
  } finally {
    session.inflight.delete(id);
  }
  // The record is written before the reply: a client that hears the outcome can rely on it being in
  // the audit log (it runs in another process, so it could otherwise act before the record lands).
  if (OPS[op].audited || outcome === 'LP_ERR_INTERNAL') {
    try {
      ctx.audit.append({ who: session.who, remote: session.remote, op, outcome, ...audit });
    } catch {
      /* AuditLog.append already contains its own failures */
    }
  }
  try {
    reply();
  } catch (e) {
    session.replyError(id, e);
  }
}
