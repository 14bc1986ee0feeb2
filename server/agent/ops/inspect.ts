/**
 * Read-only ops: describe, status, versions, source, exports, history, health, subscribe. They only read the
 * engine and the pipeline; none of them changes state (subscribe only flags the connection).
 */
import { LivepatchError } from '../../../shared/errors';
import { OPS, OP_NAMES, type LiveGeneration, type StatusResult } from '../../../shared/ops';
import type { Engine } from '../../engine/types';
import { PACKAGE_VERSION, PROTOCOL_VERSION } from '../../../shared/version';
import type { AgentContext } from '../context';
import type { Handler } from './types';

function requireModule(ctx: AgentContext, module: string): void {
  if (!ctx.engine.moduleIds().includes(module)) throw new LivepatchError('LP_ERR_PATCH_UNKNOWN_MODULE', `"${module}" is not a live module`);
}

export const describe: Handler<'describe'> = () => ({
  protocol: PROTOCOL_VERSION,
  agentVersion: PACKAGE_VERSION,
  ops: OP_NAMES.map((name) => ({ name, role: OPS[name].role, doc: OPS[name].doc })),
});

export const status: Handler<'status'> = async ({ ctx }) => {
  const { engine, pipeline } = ctx;
  const patching: StatusResult['patching'] = pipeline
    ? { ...pipeline.patching }
    : { enabled: false, reason: ctx.patchingReason ?? 'patching is unavailable' };
  if (ctx.opts.trustedKeysFile) patching.signaturesRequired = true;
  const result: StatusResult = {
    protocol: PROTOCOL_VERSION,
    agentVersion: PACKAGE_VERSION,
    pid: process.pid,
    uptimeSec: Math.round(process.uptime()),
    node: process.version,
    root: engine.root,
    currentGeneration: engine.currentGeneration,
    liveGenerations: engine.liveGenerations(),
    modules: engine.moduleIds().length,
    patchedModules: engine
      .listVersions()
      .filter((v) => v.patched)
      .map((v) => v.module),
    patching,
    drift: pipeline ? pipeline.drift() : [],
  };
  const checker = pipeline?.checkerStatus();
  if (checker) result.checker = checker;
  const watch = ctx.watcher?.status();
  if (watch) result.watch = watch;
  const notLive = engine.notLiveModules?.();
  if (notLive) result.notLive = notLive;
  const journal = pipeline?.journalStatus?.();
  if (journal) {
    result.journal = journal;
    result.quarantined = pipeline!.quarantined?.() ?? [];
  }
  // Cluster mode (server/cluster): the primary's engine also reports each worker's own state, and
  // the live generations' health summed over the workers (the primary serves no requests itself).
  if (engine.cluster)
    [result.workers, result.liveGenerations] = await Promise.all([engine.cluster.workerRows(), engine.cluster.liveHealth()]);
  return result;
};

/** The rows of the listed generation, each with that generation's health when it is live and counted. */
/**
 * Live generations with their health: this engine's own, or on a cluster primary (which serves no
 * requests) the workers', summed.
 */
function liveGenerations(engine: Engine): LiveGeneration[] | Promise<LiveGeneration[]> {
  return engine.cluster ? engine.cluster.liveHealth() : engine.liveGenerations();
}

export const versions: Handler<'versions'> = async ({ ctx, args }) => {
  const rows = ctx.engine.listVersions(args.generation);
  const listed = args.generation ?? ctx.engine.currentGeneration;
  const health = (await liveGenerations(ctx.engine)).find((g) => g.generation === listed)?.health;
  return health ? rows.map((r) => ({ ...r, health })) : rows;
};

export const source: Handler<'source'> = ({ ctx, args }) => {
  requireModule(ctx, args.module);
  const v = ctx.engine.getVersion(args.module, args.generation);
  if (!v) throw new LivepatchError('LP_ERR_OP_BAD_ARGS', `generation ${args.generation} is not live`);
  return { module: v.id, version: v.version, generation: v.generation, hash: v.hash, source: v.source };
};

export const exportsOp: Handler<'exports'> = ({ ctx, args }) => {
  requireModule(ctx, args.module);
  return { module: args.module, exports: ctx.engine.exportsOf(args.module) };
};

export const history: Handler<'history'> = ({ ctx, args }) => {
  const all = ctx.engine.history().map((g) => {
    const meta = ctx.commits.get(g.generation);
    if (!meta) return g;
    return { ...g, who: g.who ?? meta.who, ...((g.message ?? meta.message) ? { message: g.message ?? meta.message } : {}) };
  });
  const quarantined = ctx.pipeline?.journalStatus?.() ? ctx.pipeline.quarantined?.() : undefined;
  return { generations: args.limit ? all.slice(-args.limit) : all, ...(quarantined ? { quarantined } : {}) };
};

export const health: Handler<'health'> = async ({ ctx }) => {
  const { engine } = ctx;
  const generations = await liveGenerations(engine);
  const watch = ctx.watcher?.status();
  return { currentGeneration: engine.currentGeneration, generations, ...(watch ? { watch } : {}) };
};

export const subscribe: Handler<'subscribe'> = ({ session }) => {
  session.subscribed = true;
  return { subscribed: true };
};
