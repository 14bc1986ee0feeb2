/**
 * Patch ops: check, stage, commit, abort, apply, rollback. Each hands the request to the pipeline with
 * the caller's token name and forwards the pipeline's progress as `progress` messages for this request
 * id. The pipeline guarantees a failed op leaves the generation unchanged; here we only record who
 * committed what (for `history` and the audit record).
 */
import { LivepatchError } from '../../../shared/errors';
import type { CommitResult } from '../../../shared/ops';
import type { OpContext, Pipeline } from '../../pipeline/types';
import { hashFiles } from '../audit';
import type { OpCall } from './types';
import type { OpName } from '../../../shared/ops';
import type { Handler } from './types';

function pipelineOf(call: OpCall<OpName>): Pipeline {
  const { pipeline, patchingReason } = call.ctx;
  if (!pipeline) throw new LivepatchError('LP_ERR_PATCH_NO_SOURCES', `patching is disabled here: ${patchingReason ?? 'no pipeline'}`);
  return pipeline;
}

function opContext(call: OpCall<OpName>): OpContext {
  // Repeats of the same progress line carry nothing new; they are not sent.
  let last = '';
  return {
    who: call.session.who,
    onProgress: (p) => {
      const key = `${p.step}\u0000${p.message}\u0000${p.fraction ?? ''}`;
      if (key === last) return;
      last = key;
      call.session.progress(call.id, p.step, p.message, p.fraction);
    },
  };
}

type WorkerRow = NonNullable<CommitResult['workers']>[number];

/** Cluster mode: what each worker did, for the audit record. */
function describeWorkers(workers: readonly WorkerRow[]): string {
  return workers.map((w) => `worker ${w.id} (pid ${w.pid}) ${w.outcome}${w.generation !== undefined ? ` g${w.generation}` : ''}`).join(', ');
}

/** Cluster mode: a patch refused by a worker carries each worker's outcome; keep it in the audit record. */
async function noteWorkers<T>(call: OpCall<OpName>, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (e) {
    const workers = (e as LivepatchError)?.details as { workers?: WorkerRow[] } | undefined;
    if (Array.isArray(workers?.workers)) call.audit.detail = describeWorkers(workers.workers);
    throw e;
  }
}

function recordCommit(call: OpCall<OpName>, result: CommitResult, message?: string): void {
  call.audit.generation = result.generation;
  if (result.patchId) call.audit.patchId = result.patchId;
  if (result.workers) call.audit.detail = describeWorkers(result.workers);
  if (!result.dryRun) call.ctx.commits.set(result.generation, { who: call.session.who, ...(message ? { message } : {}) });
}

export const check: Handler<'check'> = (call) => {
  const { patch } = call.args;
  call.audit.hashes = hashFiles(patch.files);
  if (patch.id) call.audit.patchId = patch.id;
  return pipelineOf(call).check(patch, opContext(call));
};

/** Stage messages, by stage id, so the commit can be attributed with its message. */
const stagedMessages = new WeakMap<object, Map<string, string>>();

function messagesFor(call: OpCall<OpName>): Map<string, string> {
  let m = stagedMessages.get(call.ctx);
  if (!m) stagedMessages.set(call.ctx, (m = new Map()));
  return m;
}

export const stage: Handler<'stage'> = async (call) => {
  const { patch, ttlMs } = call.args;
  call.audit.hashes = hashFiles(patch.files);
  if (patch.id) call.audit.patchId = patch.id;
  const result = await noteWorkers(call, pipelineOf(call).stage(patch, opContext(call), ttlMs));
  call.audit.stageId = result.stageId;
  const messages = messagesFor(call);
  if (patch.message) messages.set(result.stageId, patch.message);
  // Bounded: stage ids that are never committed must not accumulate.
  if (messages.size > 1000) messages.delete(messages.keys().next().value as string);
  return result;
};

export const commit: Handler<'commit'> = async (call) => {
  call.audit.stageId = call.args.stageId;
  const result = await pipelineOf(call).commit(call.args.stageId, opContext(call));
  const messages = messagesFor(call);
  recordCommit(call, result, messages.get(call.args.stageId));
  messages.delete(call.args.stageId);
  return result;
};

export const abort: Handler<'abort'> = (call) => {
  call.audit.stageId = call.args.stageId;
  pipelineOf(call).abort(call.args.stageId, opContext(call));
  messagesFor(call).delete(call.args.stageId);
  return { aborted: true };
};

export const apply: Handler<'apply'> = async (call) => {
  const { patch, dryRun } = call.args;
  call.audit.hashes = hashFiles(patch.files);
  if (patch.id) call.audit.patchId = patch.id;
  const result = await noteWorkers(call, pipelineOf(call).apply(patch, opContext(call), dryRun));
  recordCommit(call, result, patch.message);
  return result;
};

export const rollback: Handler<'rollback'> = async (call) => {
  const result = await pipelineOf(call).rollback(call.args.to, opContext(call));
  recordCommit(call, result, call.args.to !== undefined ? `rollback to generation ${call.args.to}` : 'rollback');
  return result;
};
