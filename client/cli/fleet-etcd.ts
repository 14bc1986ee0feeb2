/**
 * Fleets through etcd (`etcd://HOST:PORT/NAME`, docs/fleet.md): apply, status, rollback and history
 * as writes to and reads of the fleet's keys. The CLI never talks to the agents here: it proposes a
 * rollout, the members stage it and ack, and the decision is one etcd transaction (commit only if no
 * decision exists yet, the fleet generation is still the one proposed against, and no ack changed since
 * the read that showed every live member staged). A client that dies leaves an undecided rollout that
 * the members abort at its deadline; a decided one is carried out by the members on their own.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { userInfo } from 'node:os';
import type { IKeyValue, Namespace } from 'etcd3';
import { LivepatchError, type PatchSet, type WatchArgs, type WatchFigures } from '../../shared';
import {
  effectivePatches,
  fleetKeys,
  MAX_FLEET_PATCH_BYTES,
  parseFleetUrl,
  parseRecord,
  type AckRecord,
  type LogEntry,
  type MemberRecord,
  type RolloutRecord,
  type VerdictRecord,
} from '../../shared/fleet';
import { fleetError, openFleet, type FleetConnection } from '../../shared/fleet-store';

/** Default time from proposal to decision before the rollout is aborted (ms). */
export const DEFAULT_DEADLINE_MS = 60_000;
const POLL_MS = 50;

/** `N` members or `P%` of them. */
export type CanarySpec = { count: number } | { percent: number };

/** `3` → 3 members, `10%` → a tenth (at least one). Throws LP_ERR_CLI_USAGE. */
export function parseCanary(s: string): CanarySpec {
  const m = /^(\d{1,6})(%?)$/.exec(s.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!m || n < 1 || (m[2] && n > 100))
    throw new LivepatchError('LP_ERR_CLI_USAGE', `invalid --canary "${s}": expected N (members) or P% (1-100)`);
  return m[2] ? { percent: n } : { count: n };
}

/** How many of `n` members a canary spec takes. */
export function canaryCount(spec: CanarySpec, n: number): number {
  return Math.min(n, 'count' in spec ? spec.count : Math.max(1, Math.ceil((n * spec.percent) / 100)));
}

export interface FleetApplyOptions {
  canary?: CanarySpec;
  /** Time from proposal to decision (ms). */
  deadlineMs?: number;
  /** Shell command run once the canaries committed: exit 0 means healthy (see canaryVerdict). */
  canaryCheck?: string;
  /**
   * `--watch`: with a canary, the canaries watch their new generation and the rest commit only if every
   * canary's verdict is `kept`; without one, every member watches after the commit and a revert on any
   * member rolls the whole fleet back (a rollback entry in the log).
   */
  watch?: WatchArgs;
  by?: string;
  /** Progress lines (stderr in the CLI). */
  note?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export interface FleetMemberOutcome {
  id: string;
  address: string;
  state: AckRecord['state'] | 'no-answer';
  canary?: boolean;
  error?: { code: string; message: string };
  /** With --watch: this member's verdict on the rollout's generation. */
  watch?: { verdict: VerdictRecord['verdict']; reason?: string };
}

/** Set when a watch reverted the patch: why, the figures judged, and the agent whose watch tripped. */
export interface FleetReverted {
  reason: string;
  figures?: WatchFigures;
  target: string;
}

/** `livepatch apply etcd://...` outcome, as printed under --json. */
export interface FleetApplyOutcome {
  ok: boolean;
  committed: boolean;
  fleet: string;
  rollout: string;
  patchId: string;
  /** The fleet generation after the operation. */
  generation: number;
  decision: 'commit' | 'abort' | 'none';
  members: FleetMemberOutcome[];
  canaries?: string[];
  /** With --watch: set when a member's watch reverted the patch (exit 6). */
  reverted?: FleetReverted;
  error?: { code: string; message: string };
}

/** What the canary step waits for before committing the rest. */
export interface CanaryVerdict {
  ok: boolean;
  reason?: string;
  /** The failure was a canary's watch reverting it (the apply then exits 6, LP_ERR_WATCH_REVERTED). */
  reverted?: FleetReverted;
}

/** What the canary step knows when it asks for a verdict. */
export interface CanaryContext {
  fleet: string;
  rollout: string;
  patchId: string;
  /** The canary members (id and agent address), all committed. */
  canaries: { id: string; address: string }[];
  /** Epoch ms by which the rollout must be decided. */
  deadline: number;
  canaryCheck?: string;
  /** With --watch: the canaries' watch arguments, and a read of the verdicts written so far (member id → verdict). */
  watch?: WatchArgs;
  readVerdicts?: () => Promise<Map<string, VerdictRecord>>;
  env: NodeJS.ProcessEnv;
}

/**
 * THE SEAM: the canaries committed; may the rest commit? Healthy when every check given is:
 * - `--watch`: each canary's agent watches its new generation and writes its verdict under
 *   `watch/RID/MEMBER`; healthy when every canary's verdict is `kept`. A canary whose watch reverted it
 *   has already rolled itself back and aborted the rollout in etcd.
 * - `--canary-check CMD`: the command's exit status (0 = healthy; it gets LIVEPATCH_FLEET_CANARIES = the
 *   canaries' agent addresses, comma-separated, and LIVEPATCH_FLEET_ROLLOUT).
 * Both run at once; the first failure decides. Healthy when neither is given. Bounded by the deadline; a
 * rejection counts as a failed canary.
 */
export async function canaryVerdict(ctx: CanaryContext): Promise<CanaryVerdict> {
  const checks: Promise<CanaryVerdict>[] = [];
  const stop = { done: false, kill: () => undefined as void };
  if (ctx.watch && ctx.readVerdicts) checks.push(canaryWatchVerdict(ctx, ctx.readVerdicts, stop));
  if (ctx.canaryCheck) checks.push(canaryCheckVerdict(ctx, ctx.canaryCheck, stop));
  if (checks.length === 0) return { ok: true };
  const settled = new Promise<CanaryVerdict>((resolve) => {
    let left = checks.length;
    for (const c of checks) {
      c.then(
        (v) => {
          if (!v.ok) resolve(v);
          else if (--left === 0) resolve({ ok: true });
        },
        (e: unknown) => resolve({ ok: false, reason: String((e as Error)?.message ?? e) }),
      );
    }
  });
  const v = await settled;
  // The other check is not needed any more: stop polling, end a check command still running.
  stop.done = true;
  stop.kill();
  return v;
}

/** Wait for every canary's watch verdict (or the first that is not `kept`), until the deadline. */
async function canaryWatchVerdict(
  ctx: CanaryContext,
  read: () => Promise<Map<string, VerdictRecord>>,
  stop: { done: boolean },
): Promise<CanaryVerdict> {
  for (;;) {
    if (stop.done) return { ok: false, reason: 'stopped' };
    const verdicts = await read();
    for (const c of ctx.canaries) {
      const v = verdicts.get(c.id);
      if (!v || v.verdict === 'kept') continue;
      const who = c.address || c.id;
      const reason = `the watch on canary ${who}: ${v.verdict}${v.reason ? ` (${v.reason})` : ''}`;
      return {
        ok: false,
        reason,
        ...(v.verdict === 'reverted'
          ? { reverted: { reason: v.reason ?? 'a threshold was crossed', ...(v.figures ? { figures: v.figures } : {}), target: who } }
          : {}),
      };
    }
    if (ctx.canaries.every((c) => verdicts.get(c.id)?.verdict === 'kept')) return { ok: true };
    if (Date.now() >= ctx.deadline) return { ok: false, reason: "the canaries' watch verdicts did not come before the deadline" };
    await sleep(POLL_MS * 2);
  }
}

function canaryCheckVerdict(ctx: CanaryContext, command: string, stop: { kill: () => void }): Promise<CanaryVerdict> {
  const left = ctx.deadline - Date.now();
  if (left <= 0) return Promise.resolve({ ok: false, reason: 'no time left before the deadline' });
  return new Promise((resolve) => {
    const child = spawn(command, {
      shell: true,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...ctx.env, LIVEPATCH_FLEET_CANARIES: ctx.canaries.map((c) => c.address).join(','), LIVEPATCH_FLEET_ROLLOUT: ctx.rollout },
    });
    stop.kill = () => {
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ ok: false, reason: 'the canary check did not finish before the deadline' });
    }, left);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, reason: `the canary check could not run: ${e.message}` });
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code === 0 ? { ok: true } : { ok: false, reason: `the canary check exited ${code ?? signal}` });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readMembers(ns: Namespace): Promise<MemberRecord[]> {
  const res = await ns.getAll().prefix(fleetKeys.members).exec();
  return (res.kvs as IKeyValue[])
    .map((kv) => parseRecord<MemberRecord>(kv.value))
    .filter((m): m is MemberRecord => !!m && typeof m.id === 'string');
}

async function readAcks(ns: Namespace, rid: string): Promise<{ revision: number; acks: Map<string, AckRecord> }> {
  const res = await ns.getAll().prefix(fleetKeys.acks(rid)).exec();
  const acks = new Map<string, AckRecord>();
  for (const kv of res.kvs as IKeyValue[]) {
    const a = parseRecord<AckRecord>(kv.value);
    if (a) acks.set(kv.key.toString().slice(fleetKeys.acks(rid).length), a);
  }
  return { revision: Number(res.header?.revision ?? 0), acks };
}

async function readVerdicts(ns: Namespace, rid: string): Promise<Map<string, VerdictRecord>> {
  const res = await ns.getAll().prefix(fleetKeys.verdicts(rid)).exec();
  const out = new Map<string, VerdictRecord>();
  for (const kv of res.kvs as IKeyValue[]) {
    const v = parseRecord<VerdictRecord>(kv.value);
    if (v && typeof v.verdict === 'string') out.set(kv.key.toString().slice(fleetKeys.verdicts(rid).length), v);
  }
  return out;
}

/** The canaries' verdicts so far; a canary that left the fleet (its lease expired) without one counts as `failed`. */
async function canaryVerdicts(ns: Namespace, rid: string, canaries: string[]): Promise<Map<string, VerdictRecord>> {
  const [verdicts, members] = await Promise.all([readVerdicts(ns, rid), readMembers(ns)]);
  const alive = new Set(members.map((m) => m.id));
  for (const id of canaries)
    if (!verdicts.has(id) && !alive.has(id))
      verdicts.set(id, {
        verdict: 'failed',
        reason: 'the canary left the fleet during its watch',
        canary: true,
        time: new Date().toISOString(),
      });
  return verdicts;
}

async function readHead(ns: Namespace): Promise<number> {
  const v = await ns.get(fleetKeys.head).string();
  return v === null ? 0 : Number(v);
}

export async function readLog(ns: Namespace): Promise<LogEntry[]> {
  const res = await ns.getAll().prefix(fleetKeys.log).exec();
  return (res.kvs as IKeyValue[])
    .map((kv) => parseRecord<LogEntry>(kv.value, MAX_FLEET_PATCH_BYTES * 2))
    .filter((e): e is LogEntry => !!e && Number.isSafeInteger(e.seq))
    .sort((a, b) => a.seq - b.seq);
}

/** The key right after every key starting with `prefix` (etcd's range end for a prefix). */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  b[b.length - 1]! += 1;
  return b;
}

type Txn = ReturnType<Namespace['if']>;

/** Add "no key under `prefix` (fleet-relative) changed after `revision`" to a transaction. */
function unchangedSince(txn: Txn, fleetPrefix: string, prefix: string, revision: number): Txn {
  txn.and(prefix, 'Mod', '<', revision + 1);
  const compares = (txn as unknown as { request: { compare: Promise<Record<string, unknown>>[] } }).request.compare;
  const last = compares[compares.length - 1]!;
  compares[compares.length - 1] = last.then((c) => ({ ...c, range_end: prefixEnd(fleetPrefix + prefix) }));
  return txn;
}

function headIs(ns: Namespace, seq: number): Txn {
  return seq === 0 ? ns.if(fleetKeys.head, 'Create', '==', 0) : ns.if(fleetKeys.head, 'Value', '==', String(seq));
}

/** Write `abort` unless a decision exists; returns the decision that holds afterwards. */
async function abortRollout(ns: Namespace, rid: string): Promise<string> {
  const key = fleetKeys.decision(rid);
  const r = await ns.if(key, 'Create', '==', 0).then(ns.put(key).value('abort')).else(ns.get(key)).commit();
  if (r.succeeded) return 'abort';
  return r.responses[0]?.response_range?.kvs?.[0]?.value?.toString() ?? 'abort';
}

function fail(
  code:
    | 'LP_ERR_FLEET_STAGE_FAILED'
    | 'LP_ERR_FLEET_DEADLINE'
    | 'LP_ERR_FLEET_CONFLICT'
    | 'LP_ERR_FLEET_CANARY_FAILED'
    | 'LP_ERR_FLEET_NO_MEMBERS'
    | 'LP_ERR_WATCH_REVERTED',
  message: string,
) {
  return { code, message };
}

/** Apply `patch` to the fleet at `url`. Throws for usage and connection problems; rollout failures are in the outcome. */
export async function applyThroughFleet(url: string, patch: PatchSet, opts: FleetApplyOptions = {}): Promise<FleetApplyOutcome> {
  const address = parseFleetUrl(url);
  const env = opts.env ?? process.env;
  const note = opts.note ?? (() => undefined);
  const rid = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const stored = { ...patch, id: patch.id ?? `fleet-${rid}` } as RolloutRecord['patch'];
  const body = JSON.stringify(stored);
  if (Buffer.byteLength(body) > MAX_FLEET_PATCH_BYTES)
    throw new LivepatchError(
      'LP_ERR_CLI_USAGE',
      `the patch set is ${Buffer.byteLength(body)} bytes; a fleet stores at most ${MAX_FLEET_PATCH_BYTES}`,
    );
  const conn = openFleet(address, env);
  try {
    return await runRollout(conn, rid, stored, opts, env, note);
  } catch (err) {
    throw fleetError(err, `fleet ${address.name}`);
  } finally {
    conn.close();
  }
}

async function runRollout(
  conn: FleetConnection,
  rid: string,
  patch: RolloutRecord['patch'],
  opts: FleetApplyOptions,
  env: NodeJS.ProcessEnv,
  note: (l: string) => void,
): Promise<FleetApplyOutcome> {
  const { ns, address } = conn;
  const baseSeq = await readHead(ns);
  const initial = await readMembers(ns);
  const out = (
    o: Partial<FleetApplyOutcome> & Pick<FleetApplyOutcome, 'ok' | 'committed' | 'decision'>,
    members: FleetMemberOutcome[],
  ): FleetApplyOutcome => ({
    fleet: address.name,
    rollout: rid,
    patchId: patch.id,
    generation: baseSeq,
    members,
    ...o,
  });
  if (initial.length === 0)
    return out(
      {
        ok: false,
        committed: false,
        decision: 'none',
        error: fail(
          'LP_ERR_FLEET_NO_MEMBERS',
          `fleet ${address.name} has no live members: nothing could check the patch (start an agent with LIVEPATCH_FLEET=${'etcd://'}.../${address.name})`,
        ),
      },
      [],
    );
  const deadline = Date.now() + (opts.deadlineMs ?? DEFAULT_DEADLINE_MS);
  const rollout: RolloutRecord = {
    id: rid,
    patch,
    baseSeq,
    deadline,
    by: opts.by ?? safeUser(),
    createdAt: new Date().toISOString(),
    ...(opts.watch ? { watch: opts.watch, watchScope: opts.canary ? 'canaries' : 'all' } : {}),
  };
  await ns
    .if(fleetKeys.rollout(rid), 'Create', '==', 0)
    .then(ns.put(fleetKeys.rollout(rid)).value(JSON.stringify(rollout)))
    .commit();
  note(`rollout ${rid}: proposed to ${initial.length} member(s) at fleet generation ${baseSeq}; waiting for them to stage`);
  const byId = new Map(initial.map((m) => [m.id, m]));
  let verdicts = new Map<string, VerdictRecord>();
  const view = (acks: Map<string, AckRecord>, ids: Iterable<string>, canaries?: Set<string>): FleetMemberOutcome[] =>
    [...ids].map((id) => {
      const a = acks.get(id);
      const v = verdicts.get(id);
      return {
        id,
        address: byId.get(id)?.address ?? '',
        state: a?.state ?? 'no-answer',
        ...(canaries?.has(id) ? { canary: true } : {}),
        ...(a?.error ? { error: a.error } : {}),
        ...(v ? { watch: { verdict: v.verdict, ...(v.reason ? { reason: v.reason } : {}) } } : {}),
      };
    });

  // Phase one: every live member of the initial set acks staged; any member's `failed` ack fails the rollout.
  // (A member that joined after the proposal stages it too; it is not waited for, but its failure counts.)
  let required: string[] = initial.map((m) => m.id).sort();
  let acks = new Map<string, AckRecord>();
  let revision = 0;
  const decideDelay = Number(env['LIVEPATCH_FLEET_DECIDE_DELAY_MS'] ?? 0);
  const everyone = () => [...new Set([...required, ...acks.keys()])];
  const waitStaged = async (): Promise<FleetApplyOutcome | undefined> => {
    for (;;) {
      const alive = new Set((await readMembers(ns)).map((m) => m.id));
      ({ acks, revision } = await readAcks(ns, rid));
      required = required.filter((id) => alive.has(id) || acks.has(id));
      const failed = [...acks.keys()].filter((id) => acks.get(id)?.state === 'failed');
      if (failed.length > 0) {
        const d = await abortRollout(ns, rid);
        const first = acks.get(failed[0]!)!;
        return out(
          {
            ok: false,
            committed: false,
            decision: d === 'abort' ? 'abort' : 'commit',
            error: fail(
              'LP_ERR_FLEET_STAGE_FAILED',
              `${failed.length} member(s) could not stage the patch (${byId.get(failed[0]!)?.address || failed[0]}: ${first.error?.code ?? ''} ${first.error?.message ?? ''}); nothing was committed`,
            ),
          },
          view(acks, everyone()),
        );
      }
      const decision = await ns.get(fleetKeys.decision(rid)).string();
      if (decision === 'abort')
        return out(
          {
            ok: false,
            committed: false,
            decision: 'abort',
            error: fail('LP_ERR_FLEET_DEADLINE', 'the rollout was aborted before it was decided (deadline passed); nothing was committed'),
          },
          view(acks, everyone()),
        );
      if (required.length > 0 && required.every((id) => acks.get(id)?.state === 'staged')) return undefined;
      if (required.length === 0) {
        await abortRollout(ns, rid);
        return out(
          {
            ok: false,
            committed: false,
            decision: 'abort',
            error: fail('LP_ERR_FLEET_NO_MEMBERS', 'every member left before staging; nothing was committed'),
          },
          [],
        );
      }
      if (Date.now() >= deadline) {
        await abortRollout(ns, rid);
        return out(
          {
            ok: false,
            committed: false,
            decision: 'abort',
            error: fail('LP_ERR_FLEET_DEADLINE', `not every member staged before the deadline; nothing was committed`),
          },
          view(acks, everyone()),
        );
      }
      await sleep(POLL_MS);
    }
  };
  const early = await waitStaged();
  if (early) return early;
  note(`rollout ${rid}: all ${required.length} member(s) staged`);
  if (decideDelay > 0) await sleep(decideDelay);

  const ackPrefix = fleetKeys.acks(rid);
  const decisionKey = fleetKeys.decision(rid);
  const seq = baseSeq + 1;
  const entry = (): LogEntry => ({ seq, kind: 'patch', rollout: rid, patch, by: rollout.by, time: new Date().toISOString() });
  const commitOps = () => [
    ns.put(fleetKeys.logEntry(seq)).value(JSON.stringify(entry())),
    ns.put(fleetKeys.head).value(String(seq)),
    ns.put(decisionKey).value('commit'),
  ];
  const lost = async (): Promise<FleetApplyOutcome> => {
    const d = await abortRollout(ns, rid);
    const head = await readHead(ns);
    if (d === 'abort' && Date.now() >= deadline)
      return out(
        {
          ok: false,
          committed: false,
          decision: 'abort',
          error: fail('LP_ERR_FLEET_DEADLINE', 'the deadline passed before the decision; nothing was committed'),
        },
        view(acks, required),
      );
    return out(
      {
        ok: false,
        committed: false,
        decision: d === 'commit' ? 'commit' : 'abort',
        generation: head,
        error: fail(
          'LP_ERR_FLEET_CONFLICT',
          head !== baseSeq
            ? `the fleet moved to generation ${head} while this rollout was staged; aborted (re-run against the new generation)`
            : 'the rollout was decided by someone else',
        ),
      },
      view(acks, required),
    );
  };

  /** The decision transaction failed: was it only an ack that changed (a member joined or left)? Then read again. */
  const onlyAcksMoved = async (): Promise<boolean> =>
    Date.now() < deadline && (await ns.get(decisionKey).string()) === null && (await readHead(ns)) === baseSeq;

  let canaries: string[] | undefined;
  if (opts.canary) {
    canaries = required.slice(0, canaryCount(opts.canary, required.length));
    const canarySet = new Set(canaries);
    for (;;) {
      const t = unchangedSince(headIs(ns, baseSeq).and(decisionKey, 'Create', '==', 0), address.prefix, ackPrefix, revision);
      const r = await t.then(ns.put(fleetKeys.canary(rid)).value(JSON.stringify({ members: canaries }))).commit();
      if (r.succeeded) break;
      if (!(await onlyAcksMoved())) return lost();
      const again = await waitStaged();
      if (again) return again;
    }
    note(`rollout ${rid}: committing on ${canaries.length} canary member(s) first`);
    for (;;) {
      ({ acks } = await readAcks(ns, rid));
      const bad = canaries.filter((id) => acks.get(id)?.state === 'commit-failed');
      const done = canaries.every((id) => acks.get(id)?.state === 'committed' || !acks.has(id));
      if (bad.length || done || Date.now() >= deadline) break;
      await sleep(POLL_MS);
    }
    const committedCanaries = canaries.filter((id) => acks.get(id)?.state === 'committed');
    let verdict: CanaryVerdict;
    if (committedCanaries.length !== canaries.length) verdict = { ok: false, reason: 'not every canary committed' };
    else {
      try {
        if (opts.watch) note(`rollout ${rid}: the canaries watch their new generation for ${Math.round(opts.watch.durationMs / 1000)} s`);
        verdict = await canaryVerdict({
          fleet: address.name,
          rollout: rid,
          patchId: patch.id,
          canaries: canaries.map((id) => ({ id, address: byId.get(id)?.address ?? '' })),
          deadline,
          ...(opts.canaryCheck ? { canaryCheck: opts.canaryCheck } : {}),
          ...(opts.watch ? { watch: opts.watch, readVerdicts: () => canaryVerdicts(ns, rid, canaries!) } : {}),
          env,
        });
      } catch (e) {
        verdict = { ok: false, reason: String((e as Error)?.message ?? e) };
      }
    }
    if (!verdict.ok) {
      const d = await abortRollout(ns, rid);
      note(`rollout ${rid}: canary failed (${verdict.reason}); the canaries roll back, the rest abort`);
      // Wait (bounded) for the canaries to report their rollback, so the outcome says so.
      const until = Date.now() + 15_000;
      for (;;) {
        ({ acks } = await readAcks(ns, rid));
        if (committedCanaries.every((id) => acks.get(id)?.state !== 'committed') || Date.now() >= until) break;
        await sleep(POLL_MS);
      }
      if (opts.watch) verdicts = await readVerdicts(ns, rid);
      const error = verdict.reverted
        ? fail('LP_ERR_WATCH_REVERTED', `canary failed: ${verdict.reason}; the canary's watch rolled it back and the rest never committed`)
        : fail(
            'LP_ERR_FLEET_CANARY_FAILED',
            `canary failed: ${verdict.reason}; the canaries were rolled back and the rest never committed`,
          );
      return out(
        {
          ok: false,
          committed: false,
          decision: d === 'commit' ? 'commit' : 'abort',
          canaries,
          ...(verdict.reverted ? { reverted: verdict.reverted } : {}),
          error,
        },
        view(acks, required, canarySet),
      );
    }
    const r2 = await headIs(ns, baseSeq)
      .and(decisionKey, 'Create', '==', 0)
      .and(fleetKeys.canary(rid), 'Create', '>', 0)
      .then(...commitOps())
      .commit();
    if (!r2.succeeded) return lost();
  } else {
    for (;;) {
      const t = unchangedSince(headIs(ns, baseSeq).and(decisionKey, 'Create', '==', 0), address.prefix, ackPrefix, revision);
      const r = await t.then(...commitOps()).commit();
      if (r.succeeded) break;
      if (!(await onlyAcksMoved())) return lost();
      const again = await waitStaged();
      if (again) return again;
    }
  }
  note(`rollout ${rid}: committed as fleet generation ${seq}; waiting for the members to commit`);
  // The decision is made: the members commit on their own. Wait (bounded) to report what they did.
  const until = Date.now() + Math.max(15_000, deadline - Date.now());
  for (;;) {
    ({ acks } = await readAcks(ns, rid));
    const alive = new Set((await readMembers(ns)).map((m) => m.id));
    required = required.filter((id) => alive.has(id) || acks.has(id));
    if (required.every((id) => ['committed', 'commit-failed'].includes(acks.get(id)?.state ?? '')) || Date.now() >= until) break;
    await sleep(POLL_MS);
  }
  if (opts.watch && !canaries) {
    const reverted = await watchEveryMember(ns, rid, seq, baseSeq, opts.watch, required, acks, byId, rollout.by, note);
    verdicts = reverted.verdicts;
    ({ acks } = await readAcks(ns, rid));
    if (reverted.reverted) {
      return out(
        {
          ok: false,
          committed: true,
          decision: 'commit',
          generation: reverted.generation,
          reverted: reverted.reverted,
          error: fail(
            'LP_ERR_WATCH_REVERTED',
            `committed as fleet generation ${seq}, then reverted: the watch on ${reverted.reverted.target} crossed a threshold (${reverted.reverted.reason}); the fleet was rolled back as generation ${reverted.generation}`,
          ),
        },
        view(acks, required),
      );
    }
  } else if (opts.watch) verdicts = await readVerdicts(ns, rid);
  const members = view(acks, required, canaries ? new Set(canaries) : undefined);
  const bad = members.filter((m) => m.state !== 'committed');
  return out(
    {
      ok: bad.length === 0,
      committed: true,
      decision: 'commit',
      generation: seq,
      ...(canaries ? { canaries } : {}),
      ...(bad.length
        ? {
            error: {
              code: bad[0]!.error?.code ?? 'LP_ERR_FLEET_CONFLICT',
              message: `committed to the fleet, but ${bad.length} member(s) did not report a commit (${bad
                .map((m) => `${m.address || m.id}: ${m.state}`)
                .join(', ')
                .slice(0, 400)})`,
            },
          }
        : {}),
    },
    members,
  );
}

/**
 * `--watch` without a canary: every member that committed watches its new generation. Wait for every
 * verdict (bounded by the watch window plus a margin); the first member whose watch reverted it makes
 * the CLI append a rollback entry (back to `baseSeq`, only if the fleet generation is still `seq`), so
 * the whole fleet reverts. Then wait (bounded) for the members to reach that generation.
 */
async function watchEveryMember(
  ns: Namespace,
  rid: string,
  seq: number,
  baseSeq: number,
  watch: WatchArgs,
  required: string[],
  acks: Map<string, AckRecord>,
  byId: Map<string, MemberRecord>,
  by: string,
  note: (l: string) => void,
): Promise<{ verdicts: Map<string, VerdictRecord>; reverted?: FleetReverted; generation: number }> {
  const watched = required.filter((id) => acks.get(id)?.state === 'committed');
  note(`rollout ${rid}: ${watched.length} member(s) watch their new generation for ${Math.round(watch.durationMs / 1000)} s`);
  const until = Date.now() + watch.durationMs + 30_000;
  let verdicts = new Map<string, VerdictRecord>();
  let trip: string | undefined;
  for (;;) {
    verdicts = await readVerdicts(ns, rid);
    const alive = new Set((await readMembers(ns)).map((m) => m.id));
    trip = watched.find((id) => ['reverted', 'revert-failed'].includes(verdicts.get(id)?.verdict ?? ''));
    if (trip || watched.every((id) => verdicts.has(id) || !alive.has(id)) || Date.now() >= until) break;
    await sleep(POLL_MS * 2);
  }
  if (!trip) return { verdicts, generation: seq };
  const v = verdicts.get(trip)!;
  const target = byId.get(trip)?.address || trip;
  const reverted: FleetReverted = { reason: v.reason ?? 'a threshold was crossed', ...(v.figures ? { figures: v.figures } : {}), target };
  const entry: LogEntry = {
    seq: seq + 1,
    kind: 'rollback',
    to: baseSeq,
    by,
    time: new Date().toISOString(),
    message: `reverted by the watch on ${target}: ${reverted.reason}`.slice(0, 2000),
  };
  const r = await headIs(ns, seq)
    .then(ns.put(fleetKeys.logEntry(seq + 1)).value(JSON.stringify(entry)), ns.put(fleetKeys.head).value(String(seq + 1)))
    .commit();
  const generation = r.succeeded ? seq + 1 : await readHead(ns);
  note(
    r.succeeded
      ? `rollout ${rid}: the watch on ${target} reverted the patch; the fleet rolls back as generation ${seq + 1}`
      : `rollout ${rid}: the watch on ${target} reverted the patch, but the fleet moved to generation ${generation}: no fleet rollback was written`,
  );
  const wait = Date.now() + 30_000;
  for (;;) {
    const members = (await readMembers(ns)).filter((m) => watched.includes(m.id));
    if (!r.succeeded || members.every((m) => m.fleetGeneration >= seq + 1) || Date.now() >= wait) break;
    await sleep(POLL_MS * 2);
  }
  return { verdicts: await readVerdicts(ns, rid), reverted, generation };
}

function safeUser(): string {
  try {
    return userInfo().username.slice(0, 64);
  } catch {
    return 'unknown';
  }
}

/** One member as `livepatch status etcd://...` shows it. */
export interface FleetStatusMember extends MemberRecord {
  /** Why this member differs from the fleet: `generation`, `hashes: MODULE,...`, `diverged`. */
  flags: string[];
}

export interface FleetStatus {
  fleet: string;
  /** The fleet generation (committed log entries). */
  generation: number;
  /** module id → sha256 of the source the fleet's effective patches give it. */
  expected: Record<string, string>;
  members: FleetStatusMember[];
  /** Every member is at the fleet's generation with the expected hashes. */
  ok: boolean;
}

/** Members of the fleet at `url`, each flagged where it differs from the fleet's desired state. */
export async function fleetStatus(url: string, env: NodeJS.ProcessEnv = process.env): Promise<FleetStatus> {
  const address = parseFleetUrl(url);
  const conn = openFleet(address, env);
  try {
    const [head, log, members] = await Promise.all([readHead(conn.ns), readLog(conn.ns), readMembers(conn.ns)]);
    const expected: Record<string, string> = {};
    for (const e of effectivePatches(log))
      if (e.kind === 'patch')
        for (const [m, src] of Object.entries(e.patch.files)) expected[m] = createHash('sha256').update(src).digest('hex');
    const out = members
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((m) => {
        const flags: string[] = [];
        if (m.state === 'diverged') flags.push('diverged');
        if (m.fleetGeneration !== head) flags.push('generation');
        const differ = Object.entries(expected)
          .filter(([mod, h]) => m.hashes?.[mod] !== h)
          .map(([mod]) => mod);
        if (differ.length && m.state !== 'joining') flags.push(`hashes: ${differ.join(',')}`);
        return { ...m, flags };
      });
    return { fleet: address.name, generation: head, expected, members: out, ok: out.every((m) => m.flags.length === 0) };
  } catch (err) {
    throw fleetError(err, `fleet ${address.name}`);
  } finally {
    conn.close();
  }
}

/** The fleet's log, oldest first (`livepatch history etcd://...`). */
export async function fleetHistory(
  url: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ fleet: string; generation: number; entries: LogEntry[] }> {
  const address = parseFleetUrl(url);
  const conn = openFleet(address, env);
  try {
    const [head, entries] = await Promise.all([readHead(conn.ns), readLog(conn.ns)]);
    return { fleet: address.name, generation: head, entries };
  } catch (err) {
    throw fleetError(err, `fleet ${address.name}`);
  } finally {
    conn.close();
  }
}

/**
 * Roll the fleet back to fleet generation `to` (default: the state before the newest entry in effect):
 * one log entry, appended only if the fleet generation did not move; members carry it out.
 */
export async function fleetRollback(
  url: string,
  to: number | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ fleet: string; generation: number; to: number }> {
  const address = parseFleetUrl(url);
  const conn = openFleet(address, env);
  try {
    const ns = conn.ns;
    const head = await readHead(ns);
    const log = await readLog(ns);
    const live = effectivePatches(log);
    const target = to ?? (live.length >= 2 ? live[live.length - 2]!.seq : 0);
    if (head === 0 || target >= head || target < 0)
      throw new LivepatchError(
        'LP_ERR_ROLLBACK_TARGET',
        head === 0
          ? `fleet ${address.name} has nothing to roll back`
          : `fleet generation ${target} is not before the current one (${head})`,
      );
    const seq = head + 1;
    const entry: LogEntry = { seq, kind: 'rollback', to: target, by: safeUser(), time: new Date().toISOString() };
    const r = await headIs(ns, head)
      .then(ns.put(fleetKeys.logEntry(seq)).value(JSON.stringify(entry)), ns.put(fleetKeys.head).value(String(seq)))
      .commit();
    if (!r.succeeded)
      throw new LivepatchError('LP_ERR_FLEET_CONFLICT', 'the fleet generation moved during the rollback; nothing was written');
    return { fleet: address.name, generation: seq, to: target };
  } catch (err) {
    throw fleetError(err, `fleet ${address.name}`);
  } finally {
    conn.close();
  }
}
