/**
 * Cluster ops: `restart` (rolling restart of a cluster primary's workers). The agent knows clusters
 * only through the engine's declared capability (`engine.cluster`, server/engine/types.ts): a
 * primary's ClusterEngine (server/cluster) has it; any other engine answers LP_ERR_CLUSTER_NONE.
 */
import { LivepatchError } from '../../../shared/errors';
import type { Handler } from './types';

const DEFAULT_DEADLINE_MS = 10_000;

export const restart: Handler<'restart'> = async (call) => {
  const cluster = call.ctx.engine.cluster;
  if (!cluster)
    throw new LivepatchError(
      'LP_ERR_CLUSTER_NONE',
      'This agent runs in a single process, not a cluster primary: there are no workers to restart',
    );
  const r = await cluster.restartWorkers({
    deadlineMs: call.args.deadlineMs ?? DEFAULT_DEADLINE_MS,
    onProgress: (message, fraction) => call.session.progress(call.id, 'restart', message, fraction),
  });
  call.audit.generation = r.generation;
  call.audit.detail = r.replaced
    .map((x) => `worker ${x.old.id} (pid ${x.old.pid}) → ${x.new.id} (pid ${x.new.pid}) g${x.new.generation}, old ${x.ended}`)
    .join(', ');
  return r;
};
