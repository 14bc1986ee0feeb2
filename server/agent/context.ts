/**
 * The services one agent instance hands to its handlers: options, engine, pipeline, REPL, tokens,
 * lockout, audit, live sessions. The pipeline and the REPL service are loaded lazily (they pull in the
 * TypeScript compiler and ts-node); when one cannot be loaded, its ops answer with an error and
 * everything else keeps working.
 */
import type { Engine } from '../engine/types';
import type { Pipeline, PipelineOptions } from '../pipeline/types';
import type { Role } from '../../shared/auth';
import type { CheckerEngineSetting, EvalResult } from '../../shared/ops';
import type { AuditLog, RefusalAudit } from './audit';
import type { Lockout, TokenStore } from './auth';
import type { ResolvedOptions } from './options';
import type { ClientConnection } from './client-connection';
import type { Watcher } from './watch';

/** Who runs a REPL call. */
export interface ReplCallContext {
  who: string;
  role: Role;
  connectionId: string;
}

/** The REPL service contract (server/repl). */
export interface ReplService {
  open(ctx: ReplCallContext, generation?: number): string;
  close(session: string, ctx: ReplCallContext): void;
  eval(args: { code: string; session?: string; timeoutMs?: number }, ctx: ReplCallContext): Promise<EvalResult>;
  closeConnection(connectionId: string): void;
  /** Stop the service's worker and drop all sessions. */
  dispose?(): Promise<void>;
}

export interface AgentContext {
  readonly opts: ResolvedOptions;
  readonly engine: Engine;
  /** Undefined when patching is unavailable; `patchingReason` says why. */
  readonly pipeline: Pipeline | undefined;
  readonly patchingReason: string | undefined;
  readonly tokens: TokenStore;
  readonly lockout: Lockout;
  readonly audit: AuditLog;
  /** Aggregated audit records for refusals an unauthenticated peer can repeat at will. */
  readonly refusals: RefusalAudit;
  /** Every open connection, authenticated or not. */
  readonly sessions: Set<ClientConnection>;
  /** Connections still in their handshake, oldest first (their own budget: maxUnauthenticated). */
  readonly unauthenticated: Set<ClientConnection>;
  /** Who committed each generation through this agent, and why (enriches `history`). */
  readonly commits: Map<number, { who: string; message?: string }>;
  /** The watch after commits (`apply --watch`); set once the agent listens. */
  watcher?: Watcher;
  /** The REPL service, created on first use; throws when it cannot be loaded. */
  repl(): ReplService;
  /** Whether a REPL service was created (so connection close can release its sessions). */
  hasRepl(): boolean;
}

/** The pipeline's options from the agent's (one place for the plain agent and the cluster primary). */
export function pipelineOptions(engine: Engine, opts: ResolvedOptions): PipelineOptions {
  return {
    engine,
    root: opts.root,
    ...journalOptions(opts),
    checker: checkerOptions(opts),
    ...(opts.checks ? { checks: opts.checks } : {}),
  };
}

/** Create the pipeline for `engine`, or explain why patching is off. Never throws. */
export function createPipelineFor(engine: Engine, opts: ResolvedOptions): { pipeline?: Pipeline; reason?: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('../pipeline') as typeof import('../pipeline');
    const pipeline = mod.createPipeline(pipelineOptions(engine, opts));
    return { pipeline, ...(pipeline.patching.enabled ? {} : { reason: pipeline.patching.reason ?? 'patching is disabled' }) };
  } catch (e) {
    process.stderr.write(`livepatch: patching disabled: ${(e as Error).message}\n`);
    return { reason: `the patch pipeline could not start: ${(e as Error).message}` };
  }
}

/** A lazy REPL factory bound to `engine`; `dispose` stops the service if it was created. */
export function lazyRepl(
  engine: Engine,
  root: string,
  checker?: { maxMb: number; idleMs: number; stateDir?: string | false },
): { get: () => ReplService; created: () => boolean; dispose: () => Promise<void> } {
  let service: ReplService | undefined;
  return {
    get() {
      if (service) return service;
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require('../repl') as typeof import('../repl');
      // The agent audits eval itself (dispatch, with the remote address), so the service gets no audit hook.
      service = mod.createReplService({ engine, root, ...(checker ? { checker } : {}) });
      return service;
    },
    created: () => service !== undefined,
    dispose: async () => {
      await service?.dispose?.().catch(() => undefined);
    },
  };
}

/** The journal settings of the pipeline options (directory, replay, crash-loop window). */
export function journalOptions(opts: ResolvedOptions): { journalDir?: string; replay?: boolean; crashWindowMs?: number } {
  if (!opts.journalDir) return {};
  return {
    journalDir: opts.journalDir,
    replay: opts.replay,
    ...(opts.crashWindowMs !== undefined ? { crashWindowMs: opts.crashWindowMs } : {}),
  };
}

/** The type-check service's limits from the agent options. */
export function checkerOptions(opts: ResolvedOptions): {
  maxMb: number;
  idleMs: number;
  stateDir?: string | false;
  warmup: boolean;
  engine: CheckerEngineSetting;
} {
  return {
    engine: opts.checkerEngine,
    maxMb: opts.checkerMaxMb,
    idleMs: opts.checkerIdleMs,
    warmup: opts.checkerWarmup,
    ...(opts.checkerCacheDir !== undefined ? { stateDir: opts.checkerCacheDir } : {}),
  };
}
