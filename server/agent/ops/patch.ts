/**
 * Patch ops: check, stage, commit, abort, apply, rollback, warm. Each hands the request to the pipeline with
 * the caller's token name and forwards the pipeline's progress as `progress` messages for this request
 * id. The pipeline guarantees a failed op leaves the generation unchanged; here we only record who
 * committed what (for `history` and the audit record), and which token owns each stage: only the token
 * that staged a patch may commit or abort it (any other token gets LP_ERR_AUTH_FORBIDDEN, whatever
 * its role), so a stage id seen in a log or guessed is of no use to another token.
 */
import { LivepatchError } from '../../../shared/errors';
import type { CommitResult } from '../../../shared/ops';
import type { PatchSet } from '../../../shared/patch';
import type { Signer } from '../../../shared/signing';
import { checkSignature } from '../signature-policy';
import type { WatchArgs } from '../../../shared/health';
import type { Watcher } from '../watch';
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

/** The signature policy (signature-policy.ts) for this op; the audit record gets the signer and why. */
function requireSignature(call: OpCall<OpName>, patch: PatchSet): Signer | undefined {
  return checkSignature(call.ctx.opts.trustedKeysFile, patch, call.ctx.pipeline?.patching.checks === 'client', call.audit);
}

function opContext(call: OpCall<OpName>, signer?: Signer): OpContext {
  // Repeats of the same progress line carry nothing new; they are not sent.
  let last = '';
  return {
    who: call.session.who,
    ...(signer ? { signer } : {}),
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
  return workers
    .map((w) => `worker ${w.id} (pid ${w.pid}) ${w.outcome}${w.generation !== undefined ? ` g${w.generation}` : ''}`)
    .join(', ');
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

/** The agent's watcher, when commits here can be watched (checked before anything is committed). */
function watcherOf(call: OpCall<OpName>): Watcher {
  const w = call.ctx.watcher;
  if (!w || !w.canWatch()) {
    throw new LivepatchError('LP_ERR_OP_BAD_ARGS', 'this agent does not count per-generation health, so it cannot watch a commit');
  }
  return w;
}

/**
 * With `watch`: watch the new generation in the agent (it goes on if the client disconnects), then
 * answer with the verdict in `result.watch`; the op's audit record says how it ended too.
 */
async function watchAfter(call: OpCall<OpName>, result: CommitResult, watch: WatchArgs | undefined): Promise<CommitResult> {
  if (!watch) return result;
  const verdict = await watcherOf(call).run(watch, result, call.session.who, (message) => call.session.progress(call.id, 'watch', message));
  call.audit.detail = `${call.audit.detail ? call.audit.detail + '; ' : ''}watch: ${verdict.verdict}${verdict.reason ? ` (${verdict.reason})` : ''}`;
  return { ...result, watch: verdict };
}

/** Record which side checked: the pipeline's answer, or (refused before it answered) who would have. */
async function noteChecker<T extends { checkedBy?: 'host' | 'client' }>(call: OpCall<OpName>, work: Promise<T>): Promise<T> {
  try {
    const result = await work;
    if (result.checkedBy) call.audit.checkedBy = result.checkedBy;
    return result;
  } catch (e) {
    // Refused before an answer: the host checks (or would have), or the client did if it sent its check.
    const checks = call.ctx.pipeline?.patching.checks;
    const sent = (call.args as { patch?: PatchSet }).patch?.compiled !== undefined;
    if (checks === 'host' || (checks === 'client' && sent)) call.audit.checkedBy = checks;
    throw e;
  }
}

export const check: Handler<'check'> = (call) => {
  const { patch } = call.args;
  call.audit.hashes = hashFiles(patch.files);
  if (patch.id) call.audit.patchId = patch.id;
  return noteChecker(call, pipelineOf(call).check(patch, opContext(call)));
};

export const warm: Handler<'warm'> = (call) => pipelineOf(call).warm();

/** A stage made through this agent: the token that made it, its message, when it expires. */
interface StageRecord {
  tokenId: string;
  message?: string;
  signer?: Signer;
  expiresAt: number;
}

/** Stages by stage id, per agent instance. */
const stagesByAgent = new WeakMap<object, Map<string, StageRecord>>();

/** The most stage records kept per agent; expired ones go first, then the oldest. */
const MAX_STAGE_RECORDS = 1000;

function stagesOf(call: OpCall<OpName>): Map<string, StageRecord> {
  let m = stagesByAgent.get(call.ctx);
  if (!m) stagesByAgent.set(call.ctx, (m = new Map<string, StageRecord>()));
  return m;
}

/**
 * The caller must own `stageId`; checked before the pipeline sees the id. A stage id this agent has no
 * record of (never handed out, committed, aborted, or dropped from the records) is unknown to every
 * token, so nothing is ever committed without its owner being known.
 */
function checkOwner(call: OpCall<'commit' | 'abort'>, op: 'commit' | 'abort'): StageRecord {
  const rec = stagesOf(call).get(call.args.stageId);
  if (!rec)
    throw new LivepatchError(
      'LP_ERR_PATCH_STAGE_UNKNOWN',
      `No staged patch ${JSON.stringify(call.args.stageId).slice(0, 120)} (expired, committed or aborted)`,
    );
  if (rec.tokenId !== call.session.principal?.tokenId) {
    call.audit.detail = 'stage owned by another token';
    throw new LivepatchError('LP_ERR_AUTH_FORBIDDEN', `only the token that staged ${call.args.stageId.slice(0, 100)} may ${op} it`);
  }
  return rec;
}

export const stage: Handler<'stage'> = async (call) => {
  const { patch, ttlMs } = call.args;
  call.audit.hashes = hashFiles(patch.files);
  if (patch.id) call.audit.patchId = patch.id;
  const signer = requireSignature(call, patch);
  const result = await noteChecker(call, noteWorkers(call, pipelineOf(call).stage(patch, opContext(call, signer), ttlMs)));
  call.audit.stageId = result.stageId;
  const stages = stagesOf(call);
  const now = Date.now();
  const expiresAt = Date.parse(result.expiresAt);
  // Bounded: stage ids that are never committed must not accumulate.
  if (stages.size >= MAX_STAGE_RECORDS) for (const [id, r] of stages) if (r.expiresAt < now) stages.delete(id);
  if (stages.size >= MAX_STAGE_RECORDS) {
    // The oldest live stage loses its record, so it is discarded in the pipeline too.
    const oldest = stages.keys().next().value as string;
    stages.delete(oldest);
    try {
      pipelineOf(call).abort(oldest, opContext(call));
    } catch {
      /* already gone */
    }
  }
  stages.set(result.stageId, {
    tokenId: call.session.principal!.tokenId,
    ...(patch.message ? { message: patch.message } : {}),
    ...(signer ? { signer } : {}),
    expiresAt: Number.isFinite(expiresAt) ? expiresAt : now + 600_000,
  });
  return result;
};

export const commit: Handler<'commit'> = async (call) => {
  call.audit.stageId = call.args.stageId;
  const rec = checkOwner(call, 'commit');
  if (rec.signer) call.audit.signer = rec.signer;
  if (call.args.watch) watcherOf(call);
  const result = await noteChecker(call, pipelineOf(call).commit(call.args.stageId, opContext(call)));
  recordCommit(call, result, rec.message);
  stagesOf(call).delete(call.args.stageId);
  return watchAfter(call, result, call.args.watch);
};

export const abort: Handler<'abort'> = (call) => {
  call.audit.stageId = call.args.stageId;
  checkOwner(call, 'abort');
  pipelineOf(call).abort(call.args.stageId, opContext(call));
  stagesOf(call).delete(call.args.stageId);
  return { aborted: true };
};

export const apply: Handler<'apply'> = async (call) => {
  const { patch, dryRun, watch } = call.args;
  call.audit.hashes = hashFiles(patch.files);
  if (patch.id) call.audit.patchId = patch.id;
  const signer = requireSignature(call, patch);
  if (watch && !dryRun) watcherOf(call);
  const result = await noteChecker(call, noteWorkers(call, pipelineOf(call).apply(patch, opContext(call, signer), dryRun)));
  recordCommit(call, result, patch.message);
  return dryRun ? result : watchAfter(call, result, watch);
};

export const rollback: Handler<'rollback'> = async (call) => {
  const result = await pipelineOf(call).rollback(call.args.to, opContext(call));
  recordCommit(call, result, call.args.to !== undefined ? `rollback to generation ${call.args.to}` : 'rollback');
  return result;
};
