/**
 * Per-generation health figures and the watch that may revert a commit (wire shapes and the watch's
 * argument schema). See docs/health.md.
 */
import { z } from 'zod';

/** What one generation's code did in production (cumulative since it became live, or over a window). */
export interface GenerationHealth {
  /** Requests finished (response closed, or handler threw). */
  requests: number;
  /** Responses sent completely, by status class. */
  status: { '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  /** Requests whose handler threw synchronously. */
  threw: number;
  /** Requests whose connection was torn down before the response was sent. */
  destroyed: number;
  /** Uncaught exceptions raised while this generation's work was running. */
  uncaught: number;
  /** Unhandled promise rejections attributed to this generation. */
  rejections: number;
  /** 5xx + threw + destroyed + uncaught + rejections. */
  errors: number;
  /** errors ÷ requests (0 without requests), 4 decimals. */
  errorRate: number;
  /** Latency quantiles (ms, upper edge of a histogram bucket, ~19 % wide); absent without requests. */
  p50Ms?: number;
  p99Ms?: number;
}

/** Limits of `--watch`. */
export const WATCH_MAX_MS = 10 * 60_000;
export const WATCH_MIN_MS = 1000;
/** Defaults for an operator who gives only `--watch DURATION`. */
export const WATCH_DEFAULTS = { maxErrorRate: 0.01, maxP99Ratio: 2, minRequests: 20 } as const;
/** p99 is judged only once both windows hold at least this many requests (and `minRequests`). */
export const WATCH_P99_MIN_REQUESTS = 100;
/** A previous p99 below this counts as this much (sub-millisecond latencies are scheduling noise). */
export const WATCH_P99_FLOOR_MS = 1;

export const watchArgsSchema = z
  .object({
    durationMs: z.number().int().min(WATCH_MIN_MS).max(WATCH_MAX_MS),
    maxErrorRate: z.number().min(0).max(1).optional(),
    maxP99Ratio: z.number().min(1).max(1000).optional(),
    minRequests: z.number().int().min(1).max(1_000_000).optional(),
  })
  .strict();
export type WatchArgs = z.infer<typeof watchArgsSchema>;

/** The figures a verdict was made on. */
export interface WatchFigures {
  generation: number;
  previousGeneration: number;
  /** The new generation, since its commit. */
  current: GenerationHealth;
  /** The previous generation over the same length of time before the commit. */
  previous: GenerationHealth;
  limits: { maxErrorRate: number; maxP99Ratio: number; minRequests: number };
}

/** How a watch ended. */
export interface WatchResult {
  /**
   * kept: no threshold crossed; reverted: rolled back by the watch; revert-failed: a threshold was
   * crossed but the rollback failed; superseded: another commit (e.g. a fleet-wide revert) replaced the
   * generation first; stopped: the agent stopped.
   */
  verdict: 'kept' | 'reverted' | 'revert-failed' | 'superseded' | 'stopped';
  /** For reverted: which figure crossed its limit (`errorRate` or `p99`), with the values, one line. */
  reason?: string;
  figure?: 'errorRate' | 'p99';
  figures: WatchFigures;
  /** For reverted: the rollback's generation. */
  revertGeneration?: number;
  durationMs: number;
}

/** A watch in progress (status, health). */
export interface WatchStatus {
  generation: number;
  previousGeneration: number;
  who: string;
  since: string;
  until: string;
  limits: WatchFigures['limits'];
}

/** `DURATION` → ms: `90s`, `2m`, `1500ms`, or a bare number of seconds. Undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}
