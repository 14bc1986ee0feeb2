/**
 * The watch after a commit (`apply … --watch DURATION`): for DURATION the agent compares the new
 * generation's health with the previous generation's over the same length of time before the commit,
 * and rolls back on its own as soon as a threshold is crossed. It runs in the agent, so it ends the
 * same way whether or not the client that asked for it is still connected. Every verdict is audited
 * (who asked, which figure, the values) and sent as a `watch` event; `status` shows a watch in progress.
 *
 * Thresholds, once the new generation has finished `minRequests` requests:
 * - errorRate: new error rate > previous error rate + maxErrorRate;
 * - p99: new p99 > maxP99Ratio × previous p99 (at least WATCH_P99_FLOOR_MS), once both generations
 *   served at least max(minRequests, 100) requests in their windows.
 * Fewer requests than that by the end of the window: kept (nothing to judge).
 *
 * On a cluster primary (server/cluster) the figures are the workers': each counts its own requests
 * and keeps its own baseline, and the primary sums their counters (a worker that exits or does not
 * answer in time is left out of that reading, so it never holds the watch up). A revert is one
 * cluster rollback, so every worker goes back together.
 */
import { LivepatchError } from '../../shared/errors';
import {
  WATCH_DEFAULTS,
  WATCH_P99_FLOOR_MS,
  WATCH_P99_MIN_REQUESTS,
  type WatchArgs,
  type WatchFigures,
  type WatchResult,
  type WatchStatus,
} from '../../shared/health';
import type { CommitResult } from '../../shared/ops';
import { newHealth, summarizeHealth, type Health } from '../engine/health';
import type { ClusterCapability, Engine } from '../engine/types';
import type { AgentContext } from './context';
import { broadcast } from './events';
import { HealthWindow } from './health-window';

const CHECK_MS = 250;
/** How long a revert retries while another patch op holds the pipeline. */
const REVERT_RETRY_MS = 30_000;

interface Active {
  status: WatchStatus;
  /** Set by the commit listener when someone else's commit replaced the watched generation. */
  superseded: boolean;
  stopped: boolean;
  wake: () => void;
}

/**
 * Where a watch reads its figures: a plain agent, its own engine's counters (as they are, at no added
 * cost); a cluster primary, which counts nothing itself, its workers' counters summed.
 */
interface HealthSource {
  /** The cumulative counters of a live `generation` now. */
  current(generation: number): Health | undefined | Promise<Health | undefined>;
  /** `generation`'s counters over the `ms` before its successor was committed (see HealthWindow). */
  baselineBefore(generation: number, ms: number): Health | undefined | Promise<Health | undefined>;
  stop(): void;
}

function localSource(engine: Engine): HealthSource {
  const window = new HealthWindow(engine);
  return {
    current: (generation) => engine.healthOf?.(generation),
    baselineBefore: (generation, ms) => window.baselineBefore(generation, ms),
    stop: () => window.stop(),
  };
}

function clusterSource(cluster: ClusterCapability): HealthSource {
  return {
    current: async (generation) => (await cluster.health({ generations: [generation] })).generations.get(generation)?.counts,
    baselineBefore: async (generation, ms) => (await cluster.health({ generations: [], baseline: { generation, ms } })).baseline,
    stop: () => undefined,
  };
}

const fmt = (n: number | undefined, unit = ''): string => (n === undefined ? '-' : `${Math.round(n * 10000) / 10000}${unit}`);

export class Watcher {
  private readonly source: HealthSource;
  private active: Active | undefined;

  constructor(private readonly ctx: AgentContext) {
    this.source = ctx.engine.cluster ? clusterSource(ctx.engine.cluster) : localSource(ctx.engine);
  }

  /** Whether commits here can be watched: the engine counts health, or it is a cluster primary (its workers do). */
  canWatch(): boolean {
    return this.ctx.engine.cluster !== undefined || this.ctx.engine.healthOf?.() !== undefined;
  }

  /** The watch in progress, if any. */
  status(): WatchStatus | undefined {
    return this.active?.status;
  }

  /** End a watch in progress (its verdict: stopped) and the sampling. */
  stop(): void {
    this.source.stop();
    if (this.active) {
      this.active.stopped = true;
      this.active.wake();
    }
  }

  /** Watch `commit`'s generation; resolves with the verdict (after a revert, once it is committed). */
  async run(args: WatchArgs, commit: CommitResult, who: string, onProgress?: (message: string) => void): Promise<WatchResult> {
    const { engine } = this.ctx;
    if (!engine.cluster && (!engine.healthOf || !engine.healthOf(commit.generation))) {
      throw new LivepatchError('LP_ERR_OP_BAD_ARGS', 'this agent does not count per-generation health, so it cannot watch a commit');
    }
    const limits = {
      maxErrorRate: args.maxErrorRate ?? WATCH_DEFAULTS.maxErrorRate,
      maxP99Ratio: args.maxP99Ratio ?? WATCH_DEFAULTS.maxP99Ratio,
      minRequests: args.minRequests ?? WATCH_DEFAULTS.minRequests,
    };
    const started = Date.now();
    let previous = summarizeHealth(newHealth());
    const figures = async (): Promise<WatchFigures> => ({
      generation: commit.generation,
      previousGeneration: commit.previousGeneration,
      current: summarizeHealth((await this.source.current(commit.generation)) ?? new Float64Array(0)),
      previous,
      limits,
    });
    // A newer watch replaces an older one (the older one's generation is no longer current anyway).
    if (this.active) {
      this.active.superseded = true;
      this.active.wake();
    }
    let wake = (): void => undefined;
    const active: Active = {
      status: {
        generation: commit.generation,
        previousGeneration: commit.previousGeneration,
        who,
        since: new Date(started).toISOString(),
        until: new Date(started + args.durationMs).toISOString(),
        limits,
      },
      superseded: false,
      stopped: false,
      wake: () => wake(),
    };
    this.active = active;
    const onCommit = (g: { generation: number }): void => {
      if (g.generation !== commit.generation) {
        active.superseded = true;
        active.wake();
      }
    };
    engine.on('commit', onCommit);
    this.event(commit, 'started');
    onProgress?.(
      `watching generation ${commit.generation} for ${Math.round(args.durationMs / 1000)} s against generation ${commit.previousGeneration}`,
    );
    try {
      const baseline = await this.source.baselineBefore(commit.previousGeneration, args.durationMs);
      if (baseline) previous = summarizeHealth(baseline);
      for (;;) {
        if (active.stopped)
          return this.finish(active, who, { verdict: 'stopped', figures: await figures(), durationMs: Date.now() - started });
        if (active.superseded || engine.currentGeneration !== commit.generation) {
          return this.finish(active, who, {
            verdict: 'superseded',
            reason: `generation ${engine.currentGeneration} was committed during the watch`,
            figures: await figures(),
            durationMs: Date.now() - started,
          });
        }
        const f = await figures();
        const crossed = judge(f);
        if (crossed) {
          engine.off('commit', onCommit);
          return await this.revert(active, who, commit, f, crossed, started);
        }
        if (Date.now() - started >= args.durationMs) {
          const reason =
            f.current.requests < limits.minRequests
              ? `only ${f.current.requests} request(s) in the window (min ${limits.minRequests}): nothing to judge`
              : undefined;
          return this.finish(active, who, { verdict: 'kept', ...(reason ? { reason } : {}), figures: f, durationMs: Date.now() - started });
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(CHECK_MS, Math.max(1, started + args.durationMs - Date.now())));
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    } finally {
      engine.off('commit', onCommit);
      if (this.active === active) this.active = undefined;
    }
  }

  private async revert(
    active: Active,
    who: string,
    commit: CommitResult,
    f: WatchFigures,
    crossed: { figure: 'errorRate' | 'p99'; reason: string },
    started: number,
  ): Promise<WatchResult> {
    const pipeline = this.ctx.pipeline;
    const deadline = Date.now() + REVERT_RETRY_MS;
    for (;;) {
      if (this.ctx.engine.currentGeneration !== commit.generation) {
        return this.finish(active, who, {
          verdict: 'superseded',
          reason: `generation ${this.ctx.engine.currentGeneration} was committed before the revert`,
          figures: f,
          durationMs: Date.now() - started,
        });
      }
      try {
        if (!pipeline) throw new LivepatchError('LP_ERR_PATCH_NO_SOURCES', 'patching is disabled here');
        const r = await pipeline.rollback(commit.previousGeneration, { who: `${who} (watch)` });
        this.ctx.commits.set(r.generation, { who: `${who} (watch)`, message: `reverted by the watch: ${crossed.reason}` });
        return this.finish(active, who, {
          verdict: 'reverted',
          reason: crossed.reason,
          figure: crossed.figure,
          figures: f,
          revertGeneration: r.generation,
          durationMs: Date.now() - started,
        });
      } catch (e) {
        const busy = e instanceof LivepatchError && e.code === 'LP_ERR_PATCH_BUSY';
        if (!busy || Date.now() > deadline) {
          const why = e instanceof LivepatchError ? `${e.code}: ${e.message}` : String(e);
          return this.finish(active, who, {
            verdict: 'revert-failed',
            reason: `${crossed.reason}; the revert failed (${why})`,
            figure: crossed.figure,
            figures: f,
            durationMs: Date.now() - started,
          });
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** Audit the verdict and send the event. */
  private finish(_active: Active, who: string, result: WatchResult): WatchResult {
    const { figures: f } = result;
    const values = `error rate ${fmt(f.current.errorRate)} (previous ${fmt(f.previous.errorRate)}), p99 ${fmt(f.current.p99Ms, ' ms')} (previous ${fmt(f.previous.p99Ms, ' ms')}), ${f.current.requests} request(s) (previous ${f.previous.requests})`;
    try {
      this.ctx.audit.append({
        who,
        remote: '-',
        op: 'watch',
        outcome: result.verdict,
        generation: f.generation,
        ...(result.figure ? { figure: result.figure } : {}),
        detail: `${result.reason ? result.reason + '; ' : ''}${values}${result.revertGeneration !== undefined ? `; reverted to generation ${f.previousGeneration} as generation ${result.revertGeneration}` : ''}`,
      });
    } catch {
      /* AuditLog.append contains its own failures */
    }
    this.event({ generation: f.generation, previousGeneration: f.previousGeneration }, result.verdict, result);
    return result;
  }

  private event(
    c: { generation: number; previousGeneration: number },
    verdict: WatchResult['verdict'] | 'started',
    result?: WatchResult,
  ): void {
    broadcast(this.ctx, {
      event: 'watch',
      generation: c.generation,
      previousGeneration: c.previousGeneration,
      verdict,
      ...(result?.reason ? { reason: result.reason } : {}),
      ...(result?.figure ? { figure: result.figure } : {}),
      ...(result?.revertGeneration !== undefined ? { revertGeneration: result.revertGeneration } : {}),
      time: new Date().toISOString(),
    });
  }
}

/** The first threshold the figures cross, if any. */
export function judge(f: WatchFigures): { figure: 'errorRate' | 'p99'; reason: string } | undefined {
  const { current: c, previous: p, limits } = f;
  if (c.requests < limits.minRequests) return undefined;
  const errLimit = p.errorRate + limits.maxErrorRate;
  if (c.errorRate > errLimit) {
    return {
      figure: 'errorRate',
      reason: `errorRate ${fmt(c.errorRate)} > ${fmt(errLimit)} (previous ${fmt(p.errorRate)} + max-error-rate ${limits.maxErrorRate}; ${c.errors} error(s) in ${c.requests} request(s))`,
    };
  }
  // A 99th percentile needs 100 requests to mean anything (one slow first call would be it otherwise).
  const p99Needs = Math.max(limits.minRequests, WATCH_P99_MIN_REQUESTS);
  if (c.requests >= p99Needs && p.requests >= p99Needs && p.p99Ms !== undefined && c.p99Ms !== undefined) {
    const p99Limit = Math.max(p.p99Ms, WATCH_P99_FLOOR_MS) * limits.maxP99Ratio;
    if (c.p99Ms > p99Limit) {
      return {
        figure: 'p99',
        reason: `p99 ${fmt(c.p99Ms, ' ms')} > ${fmt(p99Limit, ' ms')} (previous ${fmt(p.p99Ms, ' ms')} × max-p99-ratio ${limits.maxP99Ratio})`,
      };
    }
  }
  return undefined;
}
