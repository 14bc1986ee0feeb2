/**
 * The primary's Engine in cluster mode. It evaluates nothing itself: the model answers queries, and
 * every state change fans out to the workers over IPC, two-phase:
 *
 *  - stage: every worker stages; if any worker fails or exits, the set is discarded in the others and
 *    the stage fails (nothing is committed anywhere).
 *  - commit: the model commits synchronously (the Engine contract), then every staging worker is told
 *    to commit; `settle()` waits for their replies. A worker that exits after staging simply drops out
 *    (its replacement starts at the current generation); one that is alive but fails to commit is
 *    killed, since it would serve code the cluster no longer runs.
 *  - a worker that greets is sent the whole committed chain first, before any later command.
 *  - health: each worker counts its own requests per generation; the primary asks them all and sums
 *    the counters (same fixed layout, so a sum is exact, histogram included).
 */
import { EventEmitter } from 'node:events';
import { LivepatchError, toWireError } from '../../shared/errors';
import type { CommitResult, ExportsResult, LiveGeneration, RestartResult } from '../../shared/ops';
import type { GenerationSummary, ModuleVersionInfo } from '../../shared/patch';
import type {
  ClusterCapability,
  ClusterHealth,
  CommitMeta,
  Engine,
  StageChange,
  StageOptions,
  Staged,
  VersionRecord,
} from '../engine/types';
import { H_SIZE, newHealth, summarizeHealth } from '../engine/health';
import { Members, type Member } from './members';
import { rollingRestart, type RestartOptions } from './restart';
import { ClusterModel } from './model';
import type { ChainOp, WorkerState } from './protocol';

/** What one worker did in the last fan-out (reported in replies and audit records). */
export interface WorkerOutcome {
  id: number;
  pid: number;
  outcome: 'committed' | 'staged' | 'failed' | 'exited' | 'discarded' | 'synced';
  generation?: number;
  error?: string;
}

/** A status row per worker (shared/ops StatusResult.workers). */
export type WorkerRow = NonNullable<import('../../shared/ops').StatusResult['workers']>[number];

const STAGE_SLACK_MS = 15_000;
const COMMAND_TIMEOUT_MS = 30_000;
/** A worker that does not answer a health request in this time is left out of that answer. */
const HEALTH_TIMEOUT_MS = 2000;

interface Tx {
  staged: Staged;
  changes: StageChange[];
  opts: StageOptions;
  participants: Member[];
}

/** See the file header. */
export class ClusterEngine extends EventEmitter implements Engine, ClusterCapability {
  /** This engine is a cluster primary's: the agent reaches the workers through it. */
  get cluster(): ClusterCapability {
    return this;
  }
  readonly model: ClusterModel;
  readonly members: Members;
  /** Per worker id: resolves with its generation once it has greeted and synced (rolling restart waits on it). */
  private readonly syncs = new Map<number, { promise: Promise<number>; resolve(g: number): void; reject(e: unknown): void }>();
  private restarting = false;
  private readonly chain: ChainOp[] = [];
  private readonly txs = new Map<string, Tx>();
  private txSeq = 0;
  private lastFanout: Promise<WorkerOutcome[]> = Promise.resolve([]);

  constructor(readonly root: string) {
    super();
    this.model = new ClusterModel(root);
    this.members = new Members(
      (m) => this.onHello(m),
      (m) => {
        this.syncOf(m.id).reject(new LivepatchError('LP_ERR_CLUSTER_WORKER', `worker ${m.id} exited`));
        this.syncs.delete(m.id);
        process.stderr.write(`livepatch: cluster worker ${m.id} (pid ${m.pid}) left\n`);
      },
    );
  }

  get currentGeneration(): number {
    return this.model.current;
  }
  moduleIds(): string[] {
    return this.model.moduleIds();
  }
  getVersion(id: string, generation?: number): VersionRecord | undefined {
    return this.model.getVersion(id, generation);
  }
  listVersions(generation?: number): ModuleVersionInfo[] {
    return this.model.listVersions(generation);
  }
  exportsOf(id: string): ExportsResult['exports'] {
    for (const m of this.members.list()) {
      const e = m.state?.exports?.[id];
      if (e) return e;
    }
    throw new LivepatchError('LP_ERR_PATCH_UNKNOWN_MODULE', `${id} is not a live module in any worker`, { module: id });
  }
  // What a primary cannot do, by design: it runs none of the app's requests or code, so its own
  // in-flight counts are 0, `pin` runs `fn` in the primary as is, and there is nothing to hold. The
  // workers' figures come from the cluster capability (`liveHealth`, `workerRows`), which status and
  // health use on a primary instead of these.
  history(): GenerationSummary[] {
    const cur = this.model.current;
    return this.model.summaries().map((s) => ({ ...s, live: s.generation === cur, current: s.generation === cur, inflight: 0 }));
  }
  liveGenerations(): LiveGeneration[] {
    return [{ generation: this.model.current, inflight: 0, current: true }];
  }
  pin<T>(fn: () => T): T {
    return fn();
  }
  holdRequests(): void {
    // The primary serves no app requests; each worker holds its own until it is in sync.
  }

  async stage(changes: StageChange[], opts: StageOptions = {}): Promise<Staged> {
    const tx = `c${process.pid}-${++this.txSeq}`;
    const participants = this.members.list();
    const timeout =
      (opts.loadTimeoutMs ?? 2000) * Math.max(1, changes.length) + (opts.verifyJs ? (opts.verifyTimeoutMs ?? 5000) : 0) + STAGE_SLACK_MS;
    const results = await Promise.allSettled(
      participants.map((m) => this.members.request(m, { type: 'stage', tx, changes, opts }, timeout)),
    );
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      const outcomes: WorkerOutcome[] = participants.map((m, i) => {
        const r = results[i]!;
        if (r.status === 'fulfilled') return { id: m.id, pid: m.pid, outcome: 'discarded' };
        const err = r.reason as LivepatchError;
        return {
          id: m.id,
          pid: m.pid,
          outcome: (err.details as { exited?: boolean } | undefined)?.exited ? 'exited' : 'failed',
          error: `${err.code}: ${err.message}`,
        };
      });
      // Every worker still alive is told to discard, including one that only timed out (its stage may
      // still finish; the discard is queued behind it).
      participants.forEach((m, i) => {
        if (outcomes[i]!.outcome !== 'exited') this.members.request(m, { type: 'discard', tx }, COMMAND_TIMEOUT_MS).catch(() => undefined);
      });
      const m = participants[failed]!;
      const err = (results[failed] as PromiseRejectedResult).reason as LivepatchError;
      const wire = toWireError(err);
      const exited = outcomes[failed]!.outcome === 'exited';
      throw new LivepatchError(
        exited ? 'LP_ERR_CLUSTER_WORKER' : wire.code,
        `worker ${m.id} (pid ${m.pid}): ${wire.message}; the patch was staged in no worker and committed nowhere`,
        { workers: outcomes, ...(wire.details && typeof wire.details === 'object' ? (wire.details as object) : {}) },
      );
    }
    // The first worker's version numbers are the truth (its engine decides when a version is reused).
    const first = results[0]?.status === 'fulfilled' ? results[0].value.versions : undefined;
    const records = this.model.plan(changes, first);
    const staged: Staged = {
      stageId: tx,
      baseGeneration: this.model.current,
      changes: records,
      newModules: records.filter((r) => !this.model.getVersion(r.id)).map((r) => r.id),
    };
    this.txs.set(tx, { staged, changes, opts, participants });
    return staged;
  }

  discard(staged: Staged): void {
    const tx = this.txs.get(staged.stageId);
    if (!tx) return;
    this.txs.delete(staged.stageId);
    for (const m of tx.participants)
      this.members.request(m, { type: 'discard', tx: staged.stageId }, COMMAND_TIMEOUT_MS).catch(() => undefined);
  }

  commit(staged: Staged, meta: CommitMeta = {}): CommitResult {
    const tx = this.txs.get(staged.stageId);
    if (!tx) throw new LivepatchError('LP_ERR_PATCH_STAGE_UNKNOWN');
    if (staged.baseGeneration !== this.model.current) {
      this.discard(staged);
      throw new LivepatchError('LP_ERR_PATCH_CONFLICT', `staged on generation ${staged.baseGeneration}, current is ${this.model.current}`);
    }
    this.txs.delete(staged.stageId);
    const res = this.model.commitPatch(staged.changes, meta);
    const op: ChainOp = { kind: 'patch', changes: tx.changes, opts: tx.opts, meta };
    this.chain.push(op);
    this.lastFanout = this.fanout((m) =>
      tx.participants.includes(m) ? { type: 'commit', tx: staged.stageId, meta } : { type: 'sync', ops: [op] },
    );
    this.emitCommit(res.generation);
    return res;
  }

  async rollback(to?: number, meta: CommitMeta = {}): Promise<CommitResult> {
    const target = this.model.rollbackTarget(to);
    const res = this.model.commitRollback(target, meta);
    this.chain.push({ kind: 'rollback', to: target, meta });
    this.lastFanout = this.fanout(() => ({ type: 'rollback', to: target, meta }));
    this.emitCommit(res.generation);
    return res;
  }

  /** What each worker did in the last commit or rollback, once they all answered (or exited). */
  settle(): Promise<WorkerOutcome[]> {
    return this.lastFanout;
  }

  /** Status rows: each worker's own generation, flagged when it differs from the cluster's. */
  async workerRows(): Promise<WorkerRow[]> {
    const members = this.members.list();
    const states = await Promise.all(
      members.map((m) =>
        this.members.request(m, { type: 'status' }, 5000).then(
          (r) => r.state,
          () => m.state,
        ),
      ),
    );
    return members.map((m, i) => {
      const s: WorkerState | undefined = states[i];
      const generation = s?.generation ?? 0;
      return { pid: m.pid, id: m.id, generation, liveGenerations: s?.liveGenerations ?? [], lagging: generation !== this.model.current };
    });
  }

  async health(query: { generations?: number[]; baseline?: { generation: number; ms: number } }): Promise<ClusterHealth> {
    const command = {
      type: 'health' as const,
      ...(query.generations ? { generations: query.generations } : {}),
      ...(query.baseline ? { baseline: query.baseline } : {}),
    };
    const replies = await Promise.allSettled(this.members.list().map((m) => this.members.request(m, command, HEALTH_TIMEOUT_MS)));
    const out: ClusterHealth = { generations: new Map(), workers: 0 };
    const add = (into: Float64Array, counts: unknown): void => {
      for (let i = 0; i < H_SIZE; i++) {
        const v = (counts as unknown[])[i];
        if (typeof v === 'number' && Number.isFinite(v)) into[i]! += v;
      }
    };
    for (const r of replies) {
      if (r.status !== 'fulfilled' || !r.value.health) continue;
      const h = r.value.health;
      out.workers++;
      for (const g of Array.isArray(h.generations) ? h.generations : []) {
        if (!Array.isArray(g?.counts) || g.counts.length !== H_SIZE || !Number.isInteger(g.generation)) continue;
        let sum = out.generations.get(g.generation);
        if (!sum) out.generations.set(g.generation, (sum = { inflight: 0, counts: newHealth() }));
        sum.inflight += typeof g.inflight === 'number' ? g.inflight : 0;
        add(sum.counts, g.counts);
      }
      if (Array.isArray(h.baseline) && h.baseline.length === H_SIZE) add((out.baseline ??= newHealth()), h.baseline);
    }
    return out;
  }

  async liveHealth(): Promise<LiveGeneration[]> {
    const h = await this.health({});
    if (h.workers === 0) return this.liveGenerations();
    const cur = this.model.current;
    if (!h.generations.has(cur)) h.generations.set(cur, { inflight: 0, counts: newHealth() });
    return [...h.generations.entries()]
      .sort(([a], [b]) => a - b)
      .map(([generation, g]) => ({ generation, inflight: g.inflight, current: generation === cur, health: summarizeHealth(g.counts) }));
  }

  private fanout(command: (m: Member) => Parameters<Members['request']>[1]): Promise<WorkerOutcome[]> {
    const members = this.members.list();
    return Promise.all(
      members.map(async (m): Promise<WorkerOutcome> => {
        try {
          const r = await this.members.request(m, command(m), COMMAND_TIMEOUT_MS);
          // Modules a worker loaded lazily since it synced become known too.
          for (const id of r.state?.moduleIds ?? []) this.model.knownIds.add(id);
          return { id: m.id, pid: m.pid, outcome: 'committed', generation: r.state?.generation };
        } catch (err) {
          const e = err as LivepatchError;
          if ((e.details as { exited?: boolean } | undefined)?.exited) return { id: m.id, pid: m.pid, outcome: 'exited' };
          this.evict(m, `${e.code}: ${e.message}`);
          return { id: m.id, pid: m.pid, outcome: 'failed', error: `${e.code}: ${e.message}` };
        }
      }),
    );
  }

  private onHello(m: Member): void {
    const ops = [...this.chain];
    this.members.request(m, { type: 'sync', ops }, COMMAND_TIMEOUT_MS + ops.length * 5000).then(
      (r) => {
        if (r.state && r.state.generation !== this.model.current && this.txs.size === 0 && this.chain.length === ops.length) {
          this.evict(m, `synced to generation ${r.state.generation}, the cluster is at ${this.model.current}`);
          return;
        }
        for (const id of r.state?.moduleIds ?? []) this.model.knownIds.add(id);
        this.syncOf(m.id).resolve(r.state?.generation ?? this.model.current);
      },
      (err: LivepatchError) => {
        if (!(err.details as { exited?: boolean } | undefined)?.exited)
          this.evict(m, `could not reach the current generation: ${err.code}: ${err.message}`);
      },
    );
  }

  /** Resolves with the worker's generation once it has greeted and synced. */
  whenSynced(workerId: number): Promise<number> {
    return this.syncOf(workerId).promise;
  }

  /** Rolling restart of every worker (server/cluster/restart.ts); one at a time, never during another. */
  async restartWorkers(opts: RestartOptions): Promise<RestartResult> {
    if (this.restarting) throw new LivepatchError('LP_ERR_PATCH_BUSY', 'A rolling restart is already running');
    this.restarting = true;
    try {
      const r = await rollingRestart(this, opts);
      return { ...r, generation: this.model.current };
    } finally {
      this.restarting = false;
    }
  }

  private syncOf(workerId: number): { promise: Promise<number>; resolve(g: number): void; reject(e: unknown): void } {
    let s = this.syncs.get(workerId);
    if (!s) {
      let resolve!: (g: number) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<number>((a, b) => ((resolve = a), (reject = b)));
      promise.catch(() => undefined);
      s = { promise, resolve, reject };
      this.syncs.set(workerId, s);
    }
    return s;
  }

  /** A worker that cannot follow the cluster must not serve: it is killed (the app's exit handler may fork a fresh one). */
  private evict(m: Member, why: string): void {
    process.stderr.write(`livepatch: cluster worker ${m.id} (pid ${m.pid}) is out of step and is stopped: ${why}\n`);
    try {
      m.worker.process.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }

  private emitCommit(generation: number): void {
    const s = this.history().find((g) => g.generation === generation);
    try {
      if (s) this.emit('commit', s);
    } catch (e) {
      process.stderr.write(`livepatch: a 'commit' listener threw: ${(e as Error)?.message ?? e}\n`);
    }
  }
}
