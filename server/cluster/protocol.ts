/**
 * The primary ↔ worker messages of cluster mode, carried over the cluster IPC channel. Every message
 * is wrapped as `{ livepatch: ... }` so the app's own IPC messages pass untouched and ours are never
 * mistaken for the app's.
 */
import type { LiveGeneration } from '../../shared/ops';
import type { WireError } from '../../shared/errors';
import type { CommitMeta, StageChange, StageOptions } from '../engine/types';

/** One committed cluster operation; the chain of them brings a new worker to the current generation. */
export type ChainOp =
  { kind: 'patch'; changes: StageChange[]; opts: StageOptions; meta: CommitMeta } | { kind: 'rollback'; to: number; meta: CommitMeta };

/** Commands the primary sends; a worker runs them one at a time, in order. */
export type Command =
  | { type: 'sync'; ops: ChainOp[] }
  | { type: 'stage'; tx: string; changes: StageChange[]; opts: StageOptions }
  | { type: 'commit'; tx: string; meta: CommitMeta }
  | { type: 'discard'; tx: string }
  | { type: 'rollback'; to: number; meta: CommitMeta }
  | { type: 'status' }
  | { type: 'health'; generations?: number[]; baseline?: { generation: number; ms: number } }
  | { type: 'drain'; deadlineMs: number };

/** What a worker reports about itself (status rows, and after each state change). */
export interface WorkerState {
  pid: number;
  generation: number;
  liveGenerations: LiveGeneration[];
  /** Left out of status replies (they are polled); sent after every state change. */
  moduleIds?: string[];
  exports?: Record<string, { name: string; kind: 'function' | 'class' | 'value' }[]>;
}

/**
 * A worker's health counters (server/engine/health.ts layout, H_SIZE numbers each), for the primary
 * to sum: the asked-for live generations (every live one when none were named), and the baseline a
 * watch compares against (server/agent/health-window.ts), when this worker saw that commit.
 */
export interface WorkerHealth {
  generations: { generation: number; inflight: number; counts: number[] }[];
  baseline?: number[];
}

/** Primary → worker. */
export interface Request {
  seq: number;
  command: Command;
}

/** Worker → primary: `hello` once at start, then one reply per request. */
export type WorkerMessage =
  | { type: 'hello'; pid: number }
  | {
      type: 'reply';
      seq: number;
      ok: true;
      state: WorkerState;
      stageId?: string;
      versions?: Record<string, number>;
      health?: WorkerHealth;
    }
  | { type: 'reply'; seq: number; ok: false; error: WireError; state?: WorkerState };

/** The tag key on every livepatch IPC message. */
export const TAG = 'livepatch';

/** The livepatch payload of an IPC message, or undefined for the app's own messages. */
export function payloadOf<T>(msg: unknown): T | undefined {
  if (msg === null || typeof msg !== 'object' || !(TAG in msg)) return undefined;
  const p = (msg as Record<string, unknown>)[TAG];
  return p !== null && typeof p === 'object' ? (p as T) : undefined;
}

/** Wrap a payload for `send`. */
export function wrap(payload: unknown): Record<string, unknown> {
  return { [TAG]: payload };
}
