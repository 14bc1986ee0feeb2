/**
 * The agent as a fleet member (LIVEPATCH_FLEET=etcd://HOST:PORT/NAME, docs/fleet.md).
 *
 * Join: once journal replay is over, apply the fleet's committed patch sets (the log's effective
 * entries) before the app serves: the agent holds requests on `joined`, as it does for replay. When one
 * does not apply here (another build), what this join applied is rolled back, the agent serves its
 * deployed code and registers as `diverged` with the error (LP_ERR_FLEET_JOIN), so `livepatch status
 * etcd://...` flags it: it never serves a silent mix.
 *
 * Then it registers under `members/` with a lease (it drops out when it dies) and watches the prefix:
 *   rollouts/RID  stage the patch set, ack `staged` or `failed`; at the rollout's deadline, if nothing
 *                 was decided, write `abort` (one transaction: only if no decision exists)
 *   canary/RID    a canary commits its staged set (ack `committed`)
 *   decision/RID  `abort`: drop the staged set, or roll a committed canary back (ack `rolled-back`)
 *   log/SEQ       commit the staged set of that rollout, or apply the entry (rollbacks too)
 * A rollout carrying watch arguments (`apply --watch`) is watched after the commit by the agent's own
 * Watcher (the same thresholds and revert as the `commit` op's watch), on the canaries or on every
 * member as the rollout says; the verdict goes to `watch/RID/MEMBER`. A canary whose watch fails has
 * rolled itself back and writes `decision/RID = abort` itself, so the rest never commit even when the
 * client is gone.
 * Every step is serialised (the pipeline takes one patch op at a time) and nothing here throws into
 * the host: failures are acked, logged and shown in the member record.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { IKeyValue, Lease, Watcher } from 'etcd3';
import { LivepatchError } from '../../shared/errors';
import {
  checkStoredPatch,
  effectivePatches,
  fleetKeys,
  MAX_FLEET_PATCH_BYTES,
  parseRecord,
  rolloutWatch,
  type AckRecord,
  type AckState,
  type FleetAddress,
  type LogEntry,
  type MemberRecord,
  type RolloutRecord,
  type VerdictRecord,
} from '../../shared/fleet';
import type { WatchResult } from '../../shared/health';
import type { CommitResult } from '../../shared/ops';
import type { Watcher as HealthWatcher } from '../agent/watch';
import { fleetError, openFleet, type FleetConnection } from '../../shared/fleet-store';
import type { PatchSet } from '../../shared/patch';
import type { Engine } from '../engine/types';
import type { Pipeline } from '../pipeline/types';
import type { AuditEntry } from '../agent/audit';

export interface FleetMemberOptions {
  address: FleetAddress;
  engine: Engine;
  pipeline: Pipeline;
  /** Lease TTL in seconds (default 10): a dead member drops out this long after its last keep-alive. */
  leaseTtlSec?: number;
  /** Pause between attempts when etcd cannot be reached at join (ms, default 2000). */
  retryMs?: number;
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
  /** The agent's audit log: what the fleet made this agent do is recorded like an operator's op. */
  audit?: (entry: AuditEntry) => void;
  /**
   * The agent's signature policy (server/agent/signature-policy.ts): returns the signer, or undefined
   * when the agent requires no signatures; throws LP_ERR_PATCH_UNSIGNED / _BAD_SIGNATURE to refuse.
   * Every set from the fleet passes it before anything is staged, as an operator's would.
   */
  checkSignature?: (
    patch: PatchSet,
    note: { signer?: { keyId: string; name?: string }; detail?: string },
  ) => { keyId: string; name?: string } | undefined;
}

/** Extra time a staged set is held past the rollout's deadline, so a decision at the deadline still finds it. */
const STAGE_GRACE_MS = 30_000;
const MAX_STAGE_TTL_MS = 600_000;
/** How long a fleet rollback retries while another patch op (a watch's revert) holds the pipeline. */
const BUSY_RETRY_MS = 30_000;

type Step = () => Promise<void>;

export class FleetMember {
  /** Settles when the join (start patched) is over, whatever its outcome. Never rejects. */
  readonly joined: Promise<void>;
  readonly id: string;
  private readonly conn: FleetConnection;
  private readonly log: (line: string) => void;
  private readonly ttl: number;
  private agentAddress = '';
  private addressKnown!: () => void;
  private readonly addressSet = new Promise<void>((r) => (this.addressKnown = r));
  private queue: Promise<void> = Promise.resolve();
  private lease: Lease | undefined;
  private readonly watchers: Watcher[] = [];
  private closed = false;
  private registering = false;
  private state: MemberRecord['state'] = 'joining';
  private error: MemberRecord['error'];
  /** Agent generation before the fleet's entries (after journal replay). */
  private baseGen = 0;
  /** Fleet patch entries live here, in order, with the agent generation each produced. */
  private stack: { seq: number; gen: number }[] = [];
  private entries: LogEntry[] = [];
  private fleetGeneration = 0;
  private readonly staged = new Map<string, { stageId: string; rollout: RolloutRecord }>();
  private readonly canaries = new Map<string, { previous: number; gen: number }>();
  /** The agent's health watch (set once the agent listens). */
  private healthWatcher: HealthWatcher | undefined;
  /** Rollouts whose watch is running here. */
  private readonly watching = new Set<string>();
  private readonly decided = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly joinedAt = new Date().toISOString();

  constructor(private readonly opts: FleetMemberOptions) {
    this.log = opts.log ?? ((l) => process.stderr.write(`livepatch: fleet ${opts.address.name}: ${l}\n`));
    this.ttl = opts.leaseTtlSec ?? 10;
    this.id = `${hostname()
      .replace(/[^A-Za-z0-9.-]/g, '-')
      .slice(0, 40)}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.conn = openFleet(opts.address, opts.env);
    this.joined = this.join();
  }

  /** The agent's listening address, once known (registration waits for it). */
  setAddress(address: string): void {
    this.agentAddress = address;
    this.addressKnown();
  }

  /** The agent's health watch, which rollouts carrying `--watch` use after their commit. */
  setWatcher(w: HealthWatcher): void {
    this.healthWatcher = w;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.addressKnown();
    for (const t of this.timers.values()) clearTimeout(t);
    await Promise.all(this.watchers.map((w) => w.cancel().catch(() => undefined)));
    await this.lease?.revoke().catch(() => undefined);
    this.conn.close();
  }

  private get ns() {
    return this.conn.ns;
  }

  /** One audit record (`fleet-join`, `fleet-stage`, `fleet-commit`, `fleet-abort`, `fleet-rollback`, `fleet-deadline`). */
  private audit(
    op: string,
    by: string,
    outcome: string,
    extra: { patchId?: string; generation?: number; detail?: string; signer?: { keyId: string; name?: string } } = {},
  ): void {
    try {
      this.opts.audit?.({
        who: `fleet:${this.opts.address.name}:${by}`.slice(0, 200),
        remote: 'etcd',
        op: `fleet-${op}`,
        outcome,
        ...extra,
      });
    } catch {
      // The audit log reports its own write failures.
    }
  }

  private ctx(by: string, signer?: { keyId: string; name?: string }) {
    return { who: `fleet:${this.opts.address.name}:${by}`.slice(0, 200), ...(signer ? { signer } : {}) };
  }

  /**
   * The agent's signature policy on a set from the fleet (throws to refuse); the signer, if any.
   * `note` gets the key id and the reason of a refusal, for the audit record.
   */
  private signerOf(patch: PatchSet, note: { signer?: { keyId: string; name?: string }; detail?: string } = {}) {
    return this.opts.checkSignature?.(patch, note);
  }

  private async join(): Promise<void> {
    // Journal replay first: what the journal restores counts as already applied (same patch ids).
    await this.opts.pipeline.startupEvents?.().catch(() => undefined);
    let snapshot: { revision: string; kvs: IKeyValue[] } | undefined;
    let failures = 0;
    while (!this.closed && !snapshot) {
      try {
        const res = await this.ns.getAll().exec();
        snapshot = { revision: String(res.header?.revision ?? '0'), kvs: res.kvs as IKeyValue[] };
      } catch (err) {
        if (failures++ === 0)
          this.log(
            `cannot read the fleet (${fleetError(err, 'join').message}); serving the deployed code until it answers, retrying every ${this.opts.retryMs ?? 2000} ms`,
          );
        await new Promise((r) => setTimeout(r, this.opts.retryMs ?? 2000).unref());
      }
    }
    if (!snapshot) return;
    this.baseGen = this.opts.engine.currentGeneration;
    const byKey = new Map(snapshot.kvs.map((kv) => [kv.key.toString(), kv.value]));
    this.entries = [...byKey.entries()]
      .filter(([k]) => k.startsWith(fleetKeys.log))
      .map(([, v]) => parseRecord<LogEntry>(v, MAX_FLEET_PATCH_BYTES * 2))
      .filter((e): e is LogEntry => !!e && Number.isSafeInteger(e.seq))
      .sort((a, b) => a.seq - b.seq);
    await this.startPatched();
    // Registration and following happen after the hold is released; errors are retried by the lease handler.
    this.follow(snapshot.revision, byKey).catch((err) => this.log(`cannot follow the fleet: ${(err as Error)?.message ?? err}`));
  }

  /** Apply the fleet's effective entries; on a failure undo this join's changes and flag the member. */
  private async startPatched(): Promise<void> {
    const target = effectivePatches(this.entries);
    this.fleetGeneration = this.entries.length ? this.entries[this.entries.length - 1]!.seq : 0;
    try {
      for (const e of target) {
        if (e.kind !== 'patch') continue;
        const gen = await this.applyPatch(e.patch, e.by);
        this.stack.push({ seq: e.seq, gen });
      }
      this.state = 'ok';
      this.audit('join', 'livepatch', 'ok', {
        generation: this.opts.engine.currentGeneration,
        detail: `fleet generation ${this.fleetGeneration}: ${target.length} patch set(s) applied`,
      });
      if (target.length) this.log(`joined at fleet generation ${this.fleetGeneration}: ${target.length} patch set(s) applied`);
    } catch (err) {
      const e = err instanceof LivepatchError ? err : new LivepatchError('LP_ERR_INTERNAL', String((err as Error)?.message ?? err));
      this.state = 'diverged';
      this.error = { code: 'LP_ERR_FLEET_JOIN', message: `${e.code}: ${e.message}`.slice(0, 2000) };
      this.audit('join', 'livepatch', 'LP_ERR_FLEET_JOIN', { detail: this.error.message });
      this.log(
        `LP_ERR_FLEET_JOIN: the fleet's patches do not apply here (${e.code}: ${e.message.slice(0, 500)}); serving the deployed code, flagged diverged`,
      );
      if (this.opts.engine.currentGeneration !== this.baseGen) {
        await this.opts.pipeline
          .rollback(this.baseGen, { who: `fleet:${this.opts.address.name}` })
          .catch((re) => this.log(`could not undo the partial join: ${(re as Error)?.message}`));
      }
      this.stack = [];
    }
  }

  /** Apply a whole patch set; a patch id already live here (journal replay) counts as applied. */
  private async applyPatch(patch: RolloutRecord['patch'], by: string): Promise<number> {
    try {
      const set = checkStoredPatch(patch) as PatchSet;
      const res = await this.opts.pipeline.apply(set, this.ctx(by, this.signerOf(set)));
      return res.generation;
    } catch (err) {
      if (err instanceof LivepatchError && err.code === 'LP_ERR_PATCH_DUPLICATE') return this.opts.engine.currentGeneration;
      throw err;
    }
  }

  private async follow(revision: string, snapshot: Map<string, Buffer>): Promise<void> {
    await this.addressSet;
    if (this.closed) return;
    await this.register();
    // Only the keys a member acts on: other members' records and acks are not its business, and with
    // many members watching them would make every ack reach every member.
    const from = String(BigInt(revision) + 1n);
    for (const prefix of [fleetKeys.rollouts, 'canary/', 'decision/', fleetKeys.log]) {
      const watcher = await this.ns.watch().prefix(prefix).startRevision(from).create();
      if (this.closed) {
        await watcher.cancel().catch(() => undefined);
        return;
      }
      this.watchers.push(watcher);
      watcher.on('put', (kv) => this.onPut(kv.key.toString(), kv.value));
      watcher.on('error', (err) => this.log(`watch error: ${(err as Error)?.message ?? err}`));
    }
    // Rollouts open when we joined: stage them too (one decided or already in the log is skipped).
    for (const [k] of snapshot) if (k.startsWith('decision/')) this.decided.add(k.slice('decision/'.length));
    for (const [k, v] of snapshot) if (k.startsWith(fleetKeys.rollouts)) this.onPut(k, v);
  }

  /**
   * Register under a new lease; retried until it works. One registration loop at a time: a lost lease
   * (etcd unreachable for longer than the TTL) starts one, and failures are logged once per outage.
   */
  private async register(): Promise<void> {
    if (this.registering) return;
    this.registering = true;
    let failures = 0;
    try {
      while (!this.closed) {
        const lease = this.ns.lease(this.ttl, { autoKeepAlive: true });
        try {
          await lease.put(fleetKeys.member(this.id)).value(JSON.stringify(this.record()));
        } catch (err) {
          lease.removeAllListeners();
          lease.release();
          if (failures++ === 0)
            this.log(`cannot register (${fleetError(err, 'register').message}); retrying every ${this.opts.retryMs ?? 2000} ms`);
          await new Promise((r) => setTimeout(r, this.opts.retryMs ?? 2000).unref());
          continue;
        }
        if (this.closed) {
          await lease.revoke().catch(() => undefined);
          return;
        }
        lease.on('lost', () => {
          if (this.closed || this.lease !== lease) return;
          this.lease = undefined;
          lease.removeAllListeners();
          this.log('lease lost (etcd unreachable for longer than the lease); registering again when it answers');
          void this.register();
        });
        this.lease = lease;
        if (failures > 0) this.log('registered again');
        return;
      }
    } finally {
      this.registering = false;
    }
  }

  private record(): MemberRecord {
    const hashes: Record<string, string> = {};
    const modules = new Set<string>();
    for (const e of this.entries) if (e.kind === 'patch') for (const m of Object.keys(e.patch.files)) modules.add(m);
    for (const m of [...modules].slice(0, 500)) {
      const h = this.opts.engine.getVersion(m)?.hash;
      if (h) hashes[m] = h;
    }
    return {
      id: this.id,
      address: this.agentAddress,
      pid: process.pid,
      host: hostname(),
      generation: this.opts.engine.currentGeneration,
      fleetGeneration: this.fleetGeneration,
      state: this.state,
      ...(this.error ? { error: this.error } : {}),
      hashes,
      joinedAt: this.joinedAt,
      updatedAt: new Date().toISOString(),
    };
  }

  private async publish(): Promise<void> {
    if (!this.lease || this.closed) return;
    await this.lease
      .put(fleetKeys.member(this.id))
      .value(JSON.stringify(this.record()))
      .catch((err: unknown) => this.log(`cannot update the member record: ${(err as Error)?.message}`));
  }

  private async ack(rid: string, state: AckState, err?: unknown): Promise<void> {
    const e =
      err === undefined
        ? undefined
        : err instanceof LivepatchError
          ? err
          : new LivepatchError('LP_ERR_INTERNAL', String((err as Error)?.message ?? err));
    const rec: AckRecord = {
      state,
      generation: this.opts.engine.currentGeneration,
      ...(e ? { error: { code: e.code, message: e.message.slice(0, 2000) } } : {}),
      time: new Date().toISOString(),
    };
    // Acks live under the member's lease too: a member that dies stops counting.
    const put = this.lease ? this.lease.put(fleetKeys.ack(rid, this.id)) : this.ns.put(fleetKeys.ack(rid, this.id));
    await put.value(JSON.stringify(rec)).catch((x: unknown) => this.log(`cannot ack rollout ${rid}: ${(x as Error)?.message}`));
  }

  /** Queue a step after the previous ones; a failing step is logged and does not stop the queue. */
  private enqueue(step: Step): void {
    this.queue = this.queue.then(step).catch((err) => this.log(`internal error: ${(err as Error)?.message ?? err}`));
  }

  private onPut(key: string, value: Buffer): void {
    if (this.closed) return;
    if (key.startsWith(fleetKeys.rollouts)) {
      const rid = key.slice(fleetKeys.rollouts.length);
      const rollout = parseRecord<RolloutRecord>(value, MAX_FLEET_PATCH_BYTES * 2);
      if (!rollout || rollout.id !== rid) return this.log(`rollout ${rid.slice(0, 80)}: malformed record ignored`);
      this.enqueue(() => this.stage(rollout));
    } else if (key.startsWith('canary/')) {
      const rid = key.slice('canary/'.length);
      const c = parseRecord<{ members?: unknown }>(value);
      if (c && Array.isArray(c.members) && c.members.includes(this.id)) this.enqueue(() => this.commitCanary(rid));
    } else if (key.startsWith('decision/')) {
      const rid = key.slice('decision/'.length);
      this.decided.add(rid);
      this.clearTimer(rid);
      if (value.toString() === 'abort') this.enqueue(() => this.abort(rid));
    } else if (key.startsWith(fleetKeys.log)) {
      this.enqueue(() => this.catchUp());
    }
  }

  private clearTimer(rid: string): void {
    const t = this.timers.get(rid);
    if (t) clearTimeout(t);
    this.timers.delete(rid);
  }

  private async stage(rollout: RolloutRecord): Promise<void> {
    const rid = rollout.id;
    if (this.decided.has(rid) || this.staged.has(rid) || this.entries.some((e) => e.kind === 'patch' && e.rollout === rid)) return;
    const left = rollout.deadline - Date.now();
    if (!(left > 0)) {
      await this.abortAtDeadline(rid);
      return;
    }
    this.timers.set(rid, setTimeout(() => void this.abortAtDeadline(rid), left).unref());
    const note: { signer?: { keyId: string; name?: string }; detail?: string } = {};
    try {
      const patch = checkStoredPatch(rollout.patch) as PatchSet;
      // A rollout to be watched is refused up front by a member that cannot watch (any member may be a canary).
      if (rolloutWatch(rollout) && !this.healthWatcher?.canWatch()) {
        throw new LivepatchError(
          'LP_ERR_OP_BAD_ARGS',
          'this agent does not count per-generation health, so it cannot watch the rollout (--watch)',
        );
      }
      const signer = this.signerOf(patch, note);
      const res = await this.opts.pipeline.stage(patch, this.ctx(rollout.by, signer), Math.min(left + STAGE_GRACE_MS, MAX_STAGE_TTL_MS));
      if (this.decided.has(rid) && !this.entries.some((e) => e.kind === 'patch' && e.rollout === rid)) {
        // Decided (aborted) while we were staging: release the set and say so.
        this.opts.pipeline.abort(res.stageId, this.ctx(rollout.by));
        this.audit('abort', rollout.by, 'ok', { patchId: patch.id as string, detail: `rollout ${rid}` });
        await this.ack(rid, 'aborted');
        return;
      }
      this.staged.set(rid, { stageId: res.stageId, rollout });
      this.audit('stage', rollout.by, 'ok', { patchId: patch.id as string, detail: `rollout ${rid}` });
      await this.ack(rid, 'staged');
    } catch (err) {
      this.audit('stage', rollout.by, err instanceof LivepatchError ? err.code : 'LP_ERR_INTERNAL', {
        patchId: String(rollout.patch?.id ?? '').slice(0, 200),
        detail: `rollout ${rid}${note.detail ? `: ${note.detail}` : ''}`,
        ...(note.signer ? { signer: note.signer } : {}),
      });
      this.log(`rollout ${rid}: stage failed: ${(err as Error)?.message?.slice(0, 300)}`);
      await this.ack(rid, 'failed', err);
    }
  }

  /** The deadline passed with nothing decided: abort, in one transaction that loses to any decision. */
  private async abortAtDeadline(rid: string): Promise<void> {
    this.timers.delete(rid);
    if (this.closed || this.decided.has(rid)) return;
    try {
      const key = fleetKeys.decision(rid);
      const r = await this.ns.if(key, 'Create', '==', 0).then(this.ns.put(key).value('abort')).commit();
      if (r.succeeded) {
        this.log(`rollout ${rid}: deadline passed undecided; aborted`);
        this.audit('deadline', 'livepatch', 'ok', { detail: `rollout ${rid} aborted at its deadline` });
      }
    } catch (err) {
      this.log(`rollout ${rid}: cannot write the deadline abort: ${(err as Error)?.message}`);
    }
  }

  private async commitCanary(rid: string): Promise<void> {
    const s = this.staged.get(rid);
    if (!s || this.decided.has(rid)) return;
    const previous = this.opts.engine.currentGeneration;
    try {
      const res = await this.opts.pipeline.commit(s.stageId, this.ctx(s.rollout.by));
      this.staged.delete(rid);
      this.canaries.set(rid, { previous, gen: res.generation });
      this.audit('commit', s.rollout.by, 'ok', {
        patchId: s.rollout.patch.id,
        generation: this.opts.engine.currentGeneration,
        detail: `rollout ${rid} (canary)`,
      });
      await this.ack(rid, 'committed');
      const w = this.watchOf(s.rollout);
      if (w) this.startWatch(rid, s.rollout, w, res, true);
    } catch (err) {
      this.staged.delete(rid);
      await this.ack(rid, 'commit-failed', err);
    }
    await this.publish();
  }

  private async abort(rid: string): Promise<void> {
    const s = this.staged.get(rid);
    if (s) {
      this.staged.delete(rid);
      try {
        this.opts.pipeline.abort(s.stageId, this.ctx(s.rollout.by));
      } catch {
        // Expired already: nothing is held.
      }
      this.audit('abort', s.rollout.by, 'ok', { patchId: s.rollout.patch.id, detail: `rollout ${rid}` });
      await this.ack(rid, 'aborted');
      return;
    }
    const c = this.canaries.get(rid);
    if (c) {
      this.canaries.delete(rid);
      // The canary's own watch reverted it (or is reverting it): its verdict step acks the rollback.
      const revertedByWatch = () => this.watching.has(rid) && this.opts.engine.currentGeneration !== c.gen;
      if (revertedByWatch()) return;
      try {
        if (!(await this.rollbackUnlessBusy(c.previous, this.ctx('canary-abort'), revertedByWatch))) return;
        this.audit('rollback', 'canary-abort', 'ok', {
          generation: this.opts.engine.currentGeneration,
          detail: `rollout ${rid}: canary rolled back to generation ${c.previous}`,
        });
        await this.ack(rid, 'rolled-back');
      } catch (err) {
        this.log(`rollout ${rid}: canary rollback failed: ${(err as Error)?.message}`);
        await this.ack(rid, 'commit-failed', err);
      }
      await this.publish();
    }
  }

  /** Process log entries past our fleet generation, in order. */
  private async catchUp(): Promise<void> {
    let res;
    try {
      res = await this.ns.getAll().prefix(fleetKeys.log).exec();
    } catch (err) {
      this.log(`cannot read the fleet log: ${(err as Error)?.message}`);
      return;
    }
    const all = (res.kvs as IKeyValue[])
      .map((kv) => parseRecord<LogEntry>(kv.value, MAX_FLEET_PATCH_BYTES * 2))
      .filter((e): e is LogEntry => !!e && Number.isSafeInteger(e.seq))
      .sort((a, b) => a.seq - b.seq);
    for (const e of all) {
      if (e.seq <= this.fleetGeneration) continue;
      this.entries = all.filter((x) => x.seq <= e.seq);
      this.fleetGeneration = e.seq;
      if (this.state === 'diverged') continue;
      try {
        if (e.kind === 'patch') await this.commitEntry(e);
        else await this.rollbackTo(e);
      } catch (err) {
        const le = err instanceof LivepatchError ? err : new LivepatchError('LP_ERR_INTERNAL', String((err as Error)?.message ?? err));
        this.state = 'diverged';
        this.error = { code: le.code, message: `fleet generation ${e.seq}: ${le.message}`.slice(0, 2000) };
        this.log(`fleet generation ${e.seq} failed here: ${le.code} ${le.message.slice(0, 300)}; flagged diverged`);
      }
    }
    await this.publish();
  }

  private async commitEntry(e: Extract<LogEntry, { kind: 'patch' }>): Promise<void> {
    const rid = e.rollout;
    this.decided.add(rid);
    this.clearTimer(rid);
    const s = this.staged.get(rid);
    let gen: number;
    if (this.canaries.has(rid)) {
      this.canaries.delete(rid);
      gen = this.opts.engine.currentGeneration;
    } else if (s) {
      this.staged.delete(rid);
      let res: CommitResult;
      try {
        res = await this.opts.pipeline.commit(s.stageId, this.ctx(e.by));
      } catch (err) {
        await this.ack(rid, 'commit-failed', err);
        throw err;
      }
      gen = res.generation;
      await this.ack(rid, 'committed');
      const w = this.watchOf(s.rollout);
      if (w?.scope === 'all') this.startWatch(rid, s.rollout, w, res, false, e.seq);
    } else {
      gen = await this.applyPatch(e.patch, e.by);
      await this.ack(rid, 'committed');
    }
    this.stack.push({ seq: e.seq, gen });
    this.audit('commit', e.by, 'ok', { patchId: e.patch.id, generation: gen, detail: `fleet generation ${e.seq} (rollout ${rid})` });
  }

  /**
   * Roll back to `to`, retrying for up to 30 s while another patch op holds the pipeline (a watch's own
   * revert, an operator's op). Returns false, having done nothing, when `skip` says it is no longer needed.
   */
  private async rollbackUnlessBusy(to: number, ctx: { who: string }, skip: () => boolean = () => false): Promise<boolean> {
    const until = Date.now() + BUSY_RETRY_MS;
    for (;;) {
      if (skip()) return false;
      try {
        await this.opts.pipeline.rollback(to, ctx);
        return true;
      } catch (err) {
        if (!(err instanceof LivepatchError && err.code === 'LP_ERR_PATCH_BUSY') || Date.now() > until) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** The rollout's watch arguments; a malformed set is logged and not watched (stage refused it already). */
  private watchOf(rollout: RolloutRecord): ReturnType<typeof rolloutWatch> {
    try {
      return rolloutWatch(rollout);
    } catch (err) {
      this.log(`rollout ${rollout.id}: ${(err as Error).message}`);
      return undefined;
    }
  }

  /**
   * Watch the generation `commit` made for rollout `rid`, outside the step queue (a watch lasts its whole
   * window; aborts and log entries must not wait for it). The verdict is handled as a queued step.
   */
  private startWatch(
    rid: string,
    rollout: RolloutRecord,
    w: NonNullable<ReturnType<typeof rolloutWatch>>,
    commit: CommitResult,
    canary: boolean,
    seq?: number,
  ): void {
    const watcher = this.healthWatcher;
    this.watching.add(rid);
    const done = (result: WatchResult | { verdict: 'failed'; reason: string }) =>
      this.enqueue(() => this.onVerdict(rid, result, canary, seq));
    if (!watcher) {
      done({ verdict: 'failed', reason: 'this agent has no health watch' });
      return;
    }
    this.log(
      `rollout ${rid}: watching generation ${commit.generation} for ${Math.round(w.args.durationMs / 1000)} s${canary ? ' (canary)' : ''}`,
    );
    watcher
      .run(w.args, commit, `fleet:${this.opts.address.name}:${rollout.by}`.slice(0, 200))
      .then(done, (err: unknown) =>
        done({ verdict: 'failed', reason: `the watch could not run: ${(err as Error)?.message ?? err}`.slice(0, 500) }),
      );
  }

  /** Publish a watch verdict; a canary that cannot vouch for the patch aborts the rollout itself. */
  private async onVerdict(
    rid: string,
    result: WatchResult | { verdict: 'failed'; reason: string },
    canary: boolean,
    seq?: number,
  ): Promise<void> {
    this.watching.delete(rid);
    const r = result as Partial<WatchResult> & { verdict: VerdictRecord['verdict'] };
    const rec: VerdictRecord = {
      verdict: r.verdict,
      ...(r.reason ? { reason: r.reason.slice(0, 2000) } : {}),
      ...(r.figure ? { figure: r.figure } : {}),
      ...(r.figures ? { figures: r.figures } : {}),
      ...(r.revertGeneration !== undefined ? { revertGeneration: r.revertGeneration } : {}),
      canary,
      time: new Date().toISOString(),
    };
    this.log(`rollout ${rid}: watch verdict ${rec.verdict}${rec.reason ? ` (${rec.reason.slice(0, 300)})` : ''}`);
    const put = this.lease ? this.lease.put(fleetKeys.verdict(rid, this.id)) : this.ns.put(fleetKeys.verdict(rid, this.id));
    await put
      .value(JSON.stringify(rec))
      .catch((x: unknown) => this.log(`cannot write the watch verdict of rollout ${rid}: ${(x as Error)?.message}`));
    if (r.verdict === 'reverted') {
      if (canary) this.canaries.delete(rid);
      else {
        const i = this.stack.findIndex((x) => x.seq === seq);
        if (i >= 0 && i === this.stack.length - 1) this.stack.pop();
      }
      await this.ack(rid, 'rolled-back');
      await this.publish();
    }
    if (canary && r.verdict !== 'kept') {
      // Abort the rest now (one transaction that loses to any decision): the client may be gone. A canary
      // whose watch did not revert it (revert-failed, superseded) is rolled back by the abort step.
      try {
        const key = fleetKeys.decision(rid);
        await this.ns.if(key, 'Create', '==', 0).then(this.ns.put(key).value('abort')).commit();
      } catch (err) {
        this.log(`rollout ${rid}: cannot write the abort after the canary's watch: ${(err as Error)?.message}`);
      }
    }
  }

  private async rollbackTo(e: Extract<LogEntry, { kind: 'rollback' }>): Promise<void> {
    const want = effectivePatches(this.entries, e.seq).map((x) => x.seq);
    let p = 0;
    while (p < this.stack.length && p < want.length && this.stack[p]!.seq === want[p]) p++;
    if (p < this.stack.length) {
      const to = p === 0 ? this.baseGen : this.stack[p - 1]!.gen;
      await this.rollbackUnlessBusy(to, this.ctx(e.by));
      this.stack = this.stack.slice(0, p);
    }
    for (const seq of want.slice(p)) {
      const entry = this.entries.find((x) => x.seq === seq);
      if (entry?.kind !== 'patch') continue;
      this.stack.push({ seq, gen: await this.applyPatch(entry.patch, entry.by) });
    }
    this.audit('rollback', e.by, 'ok', {
      generation: this.opts.engine.currentGeneration,
      detail: `fleet generation ${e.seq}: back to fleet generation ${e.to}`,
    });
  }
}

/** Start a member; undefined (with a stderr line) when the address or credentials are unusable. */
export function startFleetMember(opts: FleetMemberOptions): FleetMember | undefined {
  try {
    return new FleetMember(opts);
  } catch (err) {
    (opts.log ?? ((l: string) => process.stderr.write(`livepatch: ${l}\n`)))(`fleet not joined: ${(err as Error)?.message ?? err}`);
    return undefined;
  }
}
