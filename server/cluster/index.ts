/**
 * Cluster mode's entry, called by the preload. Node `cluster` apps: in a worker, the engine follows
 * the primary over IPC (no agent, unless LIVEPATCH_LISTEN names a per-instance address, the recipe
 * for process managers such as pm2 whose primary does not run livepatch); in the primary, once the
 * app has forked workers (or LIVEPATCH_CLUSTER=1), the agent runs over a ClusterEngine.
 */
import cluster from 'node:cluster';
import { resolve } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { getEngine } from '../engine';
import { launchAgent, startAgentFromEnv } from '../agent';
import { pipelineOptions } from '../agent/context';
import { optionsFromEnv, resolveOptions } from '../agent/options';
import { hasInstancePattern, instanceEnv } from './instance';
import { startClusterWorker } from './worker';

/** Set by a livepatch cluster primary for the workers it forks: its pid. */
const PRIMARY_VAR = 'LIVEPATCH_CLUSTER_PRIMARY';

/** Start the primary's agent over a ClusterEngine. Never throws. */
function startPrimary(env: NodeJS.ProcessEnv): void {
  try {
    // Loaded only here: workers and plain apps never pay for the pipeline's modules.
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { createPipeline } = require('../pipeline') as typeof import('../pipeline');
    const { ClusterEngine } = require('./cluster-engine') as typeof import('./cluster-engine');
    const { clusterPipeline } = require('./cluster-pipeline') as typeof import('./cluster-pipeline');
    /* eslint-enable @typescript-eslint/no-require-imports */
    // The engine first, with the engine's own root: even if the agent's options are unusable, the
    // workers (already told to follow us) are answered and serve instead of holding their requests.
    const engine = new ClusterEngine(getEngine()?.root ?? resolve(env['LIVEPATCH_ROOT'] || process.cwd()));
    const opts = resolveOptions(optionsFromEnv(env));
    const inner = createPipeline(pipelineOptions(engine, opts));
    launchAgent(env, { engine, pipeline: clusterPipeline(inner, engine) }, () => void inner.close().catch(() => undefined));
  } catch (e) {
    process.stderr.write(`livepatch: agent not started: ${(e as Error)?.message ?? String(e)}\n`);
  }
}

/**
 * The preload's agent start: plain apps get the ordinary agent; cluster primaries the cluster agent;
 * cluster workers follow their primary or, with a per-instance address, run their own agent.
 */
export function startFromEnv(rawEnv: NodeJS.ProcessEnv = process.env): void {
  try {
    if (!isMainThread) return;
    const perInstance = hasInstancePattern(rawEnv['LIVEPATCH_LISTEN']);
    const env = instanceEnv(rawEnv);
    if (cluster.isWorker) {
      if (perInstance) return launchAgent(env);
      const engine = getEngine();
      // Follow the primary only if it is a livepatch cluster primary (it said so in the environment it
      // forked us with); otherwise nobody would answer, and held requests would wait for nothing.
      if (engine && env[PRIMARY_VAR] === String(process.ppid)) startClusterWorker(engine);
      return;
    }
    if (env['LIVEPATCH_CLUSTER'] === '0' || perInstance || !env['LIVEPATCH_TOKENS']) {
      if (perInstance) process.nextTick(() => Object.keys(cluster.workers ?? {}).length > 0 || startAgentFromEnv(env));
      else startAgentFromEnv(env);
      return;
    }
    // Workers forked from now on inherit this and follow us.
    process.env[PRIMARY_VAR] = String(process.pid);
    if (env['LIVEPATCH_CLUSTER'] === '1') return startPrimary(env);
    // The app forks its workers while its main module loads; the next tick sees whether it did.
    process.nextTick(() => {
      if (Object.keys(cluster.workers ?? {}).length > 0) return startPrimary(env);
      delete process.env[PRIMARY_VAR];
      startAgentFromEnv(env);
    });
  } catch (e) {
    process.stderr.write(`livepatch: agent not started: ${(e as Error)?.message ?? String(e)}\n`);
  }
}
