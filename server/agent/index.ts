/**
 * Agent lifecycle: resolve options, find (or install) the engine, start the pipeline, open the audit
 * log and the tokens store, listen, and stop. `startAgentFromEnv` is the preload's entry: it reads the
 * environment and never throws into the host — every problem is one `livepatch: ...` line on stderr.
 */
import cluster from 'node:cluster';
import { isMainThread } from 'node:worker_threads';
import { getEngine, install } from '../engine';
import type { Engine } from '../engine/types';
import { AuditLog, RefusalAudit } from './audit';
import { Lockout, TokenStore } from './auth';
import { acceptConnection, remoteOf } from './connection';
import { checkerOptions, createPipelineFor, lazyRepl, type AgentContext } from './context';
import { forwardEngineEvents } from './events';
import { listen } from './listener';
import { optionsFromEnv, resolveOptions, type AgentOptions, type ResolvedOptions } from './options';
import type { Pipeline } from '../pipeline/types';
import type { FleetMember } from '../fleet/member';
import type { ClientConnection } from './client-connection';
import { Watcher } from './watch';
import { checkSignature } from './signature-policy';

export type { AgentOptions } from './options';
export { verifyAuditFile } from './audit';

export interface Agent {
  /** `host:port` (actual port when 0 was asked) or `unix:/path`. */
  readonly address: string;
  /** Close connections (CLOSE.AGENT_STOPPING), stop listening, stop the pipeline. */
  close(): Promise<void>;
}

/** The installed engine, or a new one (modules loaded before it are not live: we say so). */
function engineFor(root: string): Engine {
  const engine = getEngine();
  if (engine) return engine;
  process.stderr.write(
    'livepatch: warning: the engine was installed by startAgent; modules loaded before it are not live (use node -r livepatch/register)\n',
  );
  return install({ root });
}

/** Join the fleet (server/fleet, loaded only here) and hold requests until the join is over. */
function joinFleet(
  engine: Engine,
  pipeline: Pipeline,
  fleet: NonNullable<ResolvedOptions['fleet']>,
  audit: AuditLog,
  trustedKeysFile: string | undefined,
): FleetMember | undefined {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { startFleetMember } = require('../fleet/member') as typeof import('../fleet/member');
  const member = startFleetMember({
    address: fleet.address,
    engine,
    pipeline,
    leaseTtlSec: fleet.leaseTtlSec,
    audit: (e) => audit.append(e),
    checkSignature: (patch, note) => checkSignature(trustedKeysFile, patch, pipeline.patching.checks === 'client', note),
  });
  if (member) engine.holdRequests(member.joined, fleet.joinMs);
  return member;
}

/** Start an agent. Rejects with a readable Error when the options are unusable (nothing is left running). */
export async function startAgent(options: AgentOptions = {}): Promise<Agent> {
  const opts = resolveOptions(options);
  const tokens = new TokenStore(opts.tokensFile);
  if (tokens.count === 0) process.stderr.write(`livepatch: warning: ${opts.tokensFile} holds no tokens; nobody can connect\n`);
  const engine = options.engine ?? engineFor(opts.root);
  const audit = new AuditLog(opts.auditFile);
  const { pipeline, reason } = options.pipeline ? { pipeline: options.pipeline, reason: undefined } : createPipelineFor(engine, opts);
  // Start patched: the fleet's committed patch sets are applied before the app serves (requests are
  // held, as for journal replay). Registered now, synchronously, before the app's modules run.
  const fleet = opts.fleet && pipeline ? joinFleet(engine, pipeline, opts.fleet, audit, opts.trustedKeysFile) : undefined;
  if (opts.fleet && !pipeline)
    process.stderr.write(
      `livepatch: fleet ${opts.fleet.address.name} not joined: patching is unavailable here (${reason ?? 'no pipeline'})\n`,
    );
  const repl = lazyRepl(engine, opts.root, checkerOptions(opts));
  const ctx: AgentContext = {
    opts,
    engine,
    pipeline,
    patchingReason: reason,
    tokens,
    lockout: new Lockout(opts.lockout),
    audit,
    refusals: new RefusalAudit(audit, opts.auditAggregateMs),
    sessions: new Set<ClientConnection>(),
    unauthenticated: new Set<ClientConnection>(),
    commits: new Map(),
    repl: repl.get,
    hasRepl: repl.created,
  };
  let listener;
  try {
    listener = await listen(ctx, (ws, req) => {
      try {
        acceptConnection(ctx, ws, remoteOf(req), req.socket);
      } catch (e) {
        process.stderr.write(`livepatch: connection setup failed: ${(e as Error).message}\n`);
        ws.terminate();
      }
    });
  } catch (e) {
    await fleet?.close().catch(() => undefined);
    if (!options.pipeline) await pipeline?.close().catch(() => undefined);
    throw e;
  }
  fleet?.setAddress(listener.address);
  const detach = forwardEngineEvents(ctx);
  ctx.watcher = new Watcher(ctx);
  fleet?.setWatcher(ctx.watcher);
  audit.append({ who: '-', remote: '-', op: 'start', outcome: 'ok', detail: `listening on ${listener.address}` });
  // What journal replay found or decided (unreadable lines, quarantined patches) goes in the audit log too.
  pipeline?.startupEvents?.().then(
    (events) => {
      for (const e of events)
        audit.append({
          who: 'livepatch',
          remote: '-',
          op: e.op,
          outcome: e.outcome,
          ...(e.patchId !== undefined ? { patchId: e.patchId } : {}),
          detail: e.detail,
        });
    },
    () => undefined,
  );
  process.stderr.write(`livepatch: agent listening on ${listener.address}\n`);
  let closing: Promise<void> | undefined;
  return {
    address: listener.address,
    close() {
      closing ??= (async () => {
        detach();
        ctx.watcher?.stop();
        await fleet?.close().catch(() => undefined);
        await listener.close();
        ctx.refusals.flush();
        await repl.dispose();
        if (!options.pipeline) await pipeline?.close().catch(() => undefined);
      })();
      return closing;
    },
  };
}

/**
 * Start an agent from LIVEPATCH_* variables (plus `extra` options, e.g. a cluster primary's engine and
 * pipeline) in the background. Never throws, never rejects: every failure is one stderr line, after
 * which `onFail` runs (to release what the caller made for the agent).
 */
export function launchAgent(env: NodeJS.ProcessEnv, extra: Partial<AgentOptions> = {}, onFail?: () => void): void {
  const fail = (e: unknown): void => {
    process.stderr.write(`livepatch: agent not started: ${(e as Error)?.message ?? String(e)}\n`);
    onFail?.();
  };
  try {
    if (!env['LIVEPATCH_TOKENS']) return fail(new Error('LIVEPATCH_TOKENS is not set (there is no unauthenticated mode)'));
    startAgent({ ...optionsFromEnv(env), ...extra }).catch(fail);
  } catch (e) {
    fail(e);
  }
}

/** The preload's entry: start from LIVEPATCH_* variables. Never throws, never rejects. */
export function startAgentFromEnv(env: NodeJS.ProcessEnv = process.env): void {
  // Cluster workers share the primary's address (per-instance agents: server/cluster); worker threads
  // inherit `-r livepatch/register`, but only the main thread hosts the agent.
  if (cluster.isWorker || !isMainThread) return;
  launchAgent(env);
}
