/**
 * Fleets in etcd: the address form, the key layout under a fleet's prefix, the records stored there and
 * their size limits. Used by the agent (a member) and the CLI (apply, status, rollback, history).
 *
 * Layout under `livepatch/fleets/NAME/`:
 *   head                 the fleet generation: how many entries the log holds (written with each entry)
 *   log/SEQ              committed entries, SEQ zero-padded from 1: a patch set or a rollback (clients only)
 *   rollouts/RID         a proposed patch set with its deadline (clients only)
 *   canary/RID           which members commit first (clients only)
 *   decision/RID         `commit` (written with the log entry, one transaction) or `abort`
 *   acks/RID/MEMBER      one member's state for the rollout: staged, failed, committed, ...
 *   watch/RID/MEMBER     one member's health-watch verdict on the rollout's generation (`--watch`)
 *   members/MEMBER       one live agent, under its lease: address, pid, host, generation, hashes
 * Patch sets are stored as the client built them (opaque JSON): fields this version does not know pass
 * through to the agents unchanged.
 */
import { LivepatchError } from './errors';
import { watchArgsSchema, type WatchArgs, type WatchResult } from './health';

/** Largest stored patch set (etcd's default request limit is 1.5 MiB; the entry needs room around it). */
export const MAX_FLEET_PATCH_BYTES = 1024 * 1024;
/** Largest member or ack record read from the store; larger ones are ignored. */
export const MAX_FLEET_RECORD_BYTES = 64 * 1024;
/** Fleet names: what a key segment and a Kubernetes label can both hold. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface FleetAddress {
  /** etcd endpoints, `host:port` each. */
  endpoints: string[];
  name: string;
  /** The key prefix, ending in `/`. */
  prefix: string;
}

/** Whether `s` is a fleet address rather than agent addresses. */
export function isFleetUrl(s: string): boolean {
  return /^etcd:\/\//i.test(s);
}

/** `etcd://HOST:PORT[,HOST:PORT...]/NAME` → endpoints and prefix. Throws LP_ERR_FLEET_URL. */
export function parseFleetUrl(s: string): FleetAddress {
  const m = /^etcd:\/\/([^/]+)\/([^/]+)$/i.exec(s.trim());
  const bad = (why: string) =>
    new LivepatchError('LP_ERR_FLEET_URL', `invalid fleet address "${s.slice(0, 200)}": ${why} (use etcd://HOST:PORT/NAME)`);
  if (!m) throw bad('expected one host list and one name');
  const endpoints = m[1]!.split(',').map((e) => e.trim());
  for (const e of endpoints)
    if (!/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(e) || Number(e.slice(e.lastIndexOf(':') + 1)) > 65535)
      throw bad(`"${e.slice(0, 100)}" is not host:port`);
  const name = m[2]!;
  if (!NAME_RE.test(name)) throw bad('the name is 1-63 letters, digits, dots, dashes or underscores');
  return { endpoints, name, prefix: `livepatch/fleets/${name}/` };
}

export const fleetKeys = {
  head: 'head',
  log: 'log/',
  logEntry: (seq: number) => `log/${String(seq).padStart(12, '0')}`,
  rollouts: 'rollouts/',
  rollout: (rid: string) => `rollouts/${rid}`,
  canary: (rid: string) => `canary/${rid}`,
  decision: (rid: string) => `decision/${rid}`,
  acks: (rid: string) => `acks/${rid}/`,
  ack: (rid: string, member: string) => `acks/${rid}/${member}`,
  verdicts: (rid: string) => `watch/${rid}/`,
  verdict: (rid: string, member: string) => `watch/${rid}/${member}`,
  members: 'members/',
  member: (id: string) => `members/${id}`,
} as const;

/** A proposed patch set (`rollouts/RID`). */
export interface RolloutRecord {
  id: string;
  /** The patch set as the client built it (id always set): opaque beyond `files`, `base`, `id`, `message`. */
  patch: Record<string, unknown> & { id: string; files: Record<string, string> };
  /** The fleet generation it was proposed against. */
  baseSeq: number;
  /** Epoch ms: undecided at this time, any member or client aborts it. */
  deadline: number;
  by: string;
  createdAt: string;
  /**
   * `--watch`: the members named by `watchScope` watch the rollout's generation after they commit it
   * (the agent's Watcher and thresholds) and write their verdict under `watch/RID/MEMBER`.
   */
  watch?: WatchArgs;
  /** `canaries`: only the canary members watch (their verdicts gate the rest); `all`: every member. */
  watchScope?: 'canaries' | 'all';
}

/** One member's watch verdict on a rollout (`watch/RID/MEMBER`). */
export interface VerdictRecord {
  verdict: WatchResult['verdict'] | 'failed';
  reason?: string;
  figure?: WatchResult['figure'];
  figures?: WatchResult['figures'];
  /** For `reverted`: the agent generation of the revert. */
  revertGeneration?: number;
  /** Whether this member watched as a canary. */
  canary: boolean;
  time: string;
}

/** A rollout's watch arguments, checked; undefined when it carries none. Throws LP_ERR_FLEET_RECORD. */
export function rolloutWatch(r: Pick<RolloutRecord, 'watch' | 'watchScope'>): { args: WatchArgs; scope: 'canaries' | 'all' } | undefined {
  if (r.watch === undefined) return undefined;
  const args = watchArgsSchema.safeParse(r.watch);
  if (!args.success || (r.watchScope !== 'canaries' && r.watchScope !== 'all'))
    throw new LivepatchError('LP_ERR_FLEET_RECORD', "the rollout's watch arguments are malformed");
  return { args: args.data, scope: r.watchScope };
}

/** A committed entry (`log/SEQ`). */
export type LogEntry =
  | { seq: number; kind: 'patch'; rollout: string; patch: RolloutRecord['patch']; by: string; time: string }
  | { seq: number; kind: 'rollback'; to: number; by: string; time: string; message?: string };

export type AckState = 'staged' | 'failed' | 'committed' | 'commit-failed' | 'aborted' | 'rolled-back';

/** One member's state for one rollout (`acks/RID/MEMBER`). */
export interface AckRecord {
  state: AckState;
  generation: number;
  error?: { code: string; message: string };
  time: string;
}

/** One live agent (`members/MEMBER`, under the member's lease). */
export interface MemberRecord {
  id: string;
  /** The agent's address (`host:port` or `unix:/path`), as it listens. */
  address: string;
  pid: number;
  host: string;
  /** The agent's own generation. */
  generation: number;
  /** The fleet generation (log seq) this member follows up to. */
  fleetGeneration: number;
  /** `ok`, or `diverged`: the fleet's patches could not all be applied here (see `error`). */
  state: 'ok' | 'diverged' | 'joining';
  error?: { code: string; message: string };
  /** Hashes of the live modules the fleet's patches name, module id → sha256. */
  hashes: Record<string, string>;
  /** Health figures, when the agent has them (opaque). */
  health?: unknown;
  joinedAt: string;
  updatedAt: string;
}

/** Parse a stored JSON record; undefined when too large or not an object. */
export function parseRecord<T>(value: Buffer | string | null | undefined, max = MAX_FLEET_RECORD_BYTES): T | undefined {
  if (value === null || value === undefined) return undefined;
  const len = typeof value === 'string' ? Buffer.byteLength(value) : value.length;
  if (len > max) return undefined;
  try {
    const v = JSON.parse(value.toString()) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as T) : undefined;
  } catch {
    return undefined;
  }
}

/** Check a stored patch set's shape (what a member needs of it); throws LP_ERR_FLEET_RECORD. */
export function checkStoredPatch(p: unknown): RolloutRecord['patch'] {
  const bad = (why: string) => new LivepatchError('LP_ERR_FLEET_RECORD', `stored patch set is malformed: ${why}`);
  if (!p || typeof p !== 'object' || Array.isArray(p)) throw bad('not an object');
  const o = p as Record<string, unknown>;
  if (typeof o['id'] !== 'string' || o['id'].length === 0 || o['id'].length > 200) throw bad('no id');
  const files = o['files'];
  if (!files || typeof files !== 'object' || Array.isArray(files)) throw bad('no files');
  for (const v of Object.values(files as Record<string, unknown>)) if (typeof v !== 'string') throw bad('a file source is not a string');
  if (o['base'] !== undefined && (typeof o['base'] !== 'object' || o['base'] === null)) throw bad('base is not an object');
  if (o['message'] !== undefined && typeof o['message'] !== 'string') throw bad('message is not a string');
  if (o['verify'] !== undefined && typeof o['verify'] !== 'string') throw bad('verify is not a string');
  return o as RolloutRecord['patch'];
}

/**
 * The patch sets in effect after log entry `seq`, in the order applied: a patch adds itself to the
 * state before it; a rollback to K makes the state that after K (0 = nothing from the fleet).
 */
export function effectivePatches(entries: readonly LogEntry[], seq = entries.length): LogEntry[] {
  const states: LogEntry[][] = [[]];
  for (const e of entries) {
    if (e.seq > seq) break;
    states[e.seq] =
      e.kind === 'patch'
        ? [...(states[e.seq - 1] ?? []), e]
        : [...(states[e.kind === 'rollback' ? Math.max(0, Math.min(e.to, e.seq - 1)) : 0] ?? [])];
  }
  return states[Math.min(seq, states.length - 1)] ?? [];
}
