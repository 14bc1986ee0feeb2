/**
 * The primary's pipeline in cluster mode: the ordinary pipeline (check once, transpile once, journal)
 * over the ClusterEngine, plus one thing — a commit or rollback answers only once every worker has
 * answered too, and the result says what each worker did.
 */
import type { CheckResult, CommitResult, DriftEntry, StageResult } from '../../shared/ops';
import type { PatchSet } from '../../shared/patch';
import type { OpContext, Pipeline } from '../pipeline/types';
import type { ClusterEngine } from './cluster-engine';

/** Wrap `inner` (a pipeline built over `engine`). */
export function clusterPipeline(inner: Pipeline, engine: ClusterEngine): Pipeline {
  const withWorkers = async (res: CommitResult, ctx: OpContext): Promise<CommitResult> => {
    if (res.dryRun) return res;
    ctx.onProgress?.({ step: 'commit', message: 'waiting for every worker to commit' });
    const workers = await engine.settle();
    return { ...res, workers };
  };
  return {
    get patching() {
      return inner.patching;
    },
    check: (patch: PatchSet, ctx: OpContext): Promise<CheckResult> => inner.check(patch, ctx),
    stage: (patch: PatchSet, ctx: OpContext, ttlMs?: number): Promise<StageResult> => inner.stage(patch, ctx, ttlMs),
    commit: async (stageId, ctx) => withWorkers(await inner.commit(stageId, ctx), ctx),
    abort: (stageId, ctx) => inner.abort(stageId, ctx),
    apply: async (patch, ctx, dryRun) => withWorkers(await inner.apply(patch, ctx, dryRun), ctx),
    rollback: async (to, ctx) => withWorkers(await inner.rollback(to, ctx), ctx),
    drift: (): DriftEntry[] => inner.drift(),
    warm: () => inner.warm(),
    checkerStatus: () => inner.checkerStatus(),
    ...(inner.quarantine
      ? {
          quarantined: () => inner.quarantined?.() ?? [],
          journalStatus: () => inner.journalStatus?.(),
          startupEvents: () => inner.startupEvents?.() ?? Promise.resolve([]),
          quarantine: async (args: { drop?: string; reapply?: string }, ctx: OpContext) => {
            const r = await inner.quarantine!(args, ctx);
            return r.commit ? { ...r, commit: await withWorkers(r.commit, ctx) } : r;
          },
        }
      : {}),
    close: () => inner.close(),
  };
}
