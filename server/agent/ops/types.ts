/**
 * The handler contract: one function per op, given validated args, the calling session and the agent's
 * services. A handler may add fields to `audit` (patch id, hashes, generation) for its audit record and
 * throws a LivepatchError to fail; dispatch turns the result or the error into the one final reply.
 */
import type { OpArgs, OpName, OpResults } from '../../../shared/ops';
import type { RequestId } from '../../../shared/messages';
import type { AuditEntry } from '../audit';
import type { AgentContext } from '../context';
import type { ClientConnection } from '../client-connection';

export interface OpCall<O extends OpName> {
  id: RequestId;
  args: OpArgs<O>;
  session: ClientConnection;
  ctx: AgentContext;
  /** Extra fields for this op's audit record. */
  audit: Partial<AuditEntry>;
}

export type Handler<O extends OpName> = (call: OpCall<O>) => OpResults[O] | Promise<OpResults[O]>;

export type HandlerTable = { [O in OpName]: Handler<O> };
