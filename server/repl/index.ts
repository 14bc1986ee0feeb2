/**
 * The REPL service behind the `eval`, `repl-open` and `repl-close` ops: sessions per connection,
 * type-check (worker) → transpile → evaluate (admin: session vm context; read/patch: V8
 * side-effect-free mode), results rendered and size-limited, every evaluation audited.
 */
import { randomBytes } from 'node:crypto';
import type { Role } from '../../shared/auth';
import { LivepatchError } from '../../shared/errors';
import type { EvalResult } from '../../shared/ops';
import type { Engine } from '../engine/types';
import type { CheckerLimits } from '../pipeline/checker-client';
import { ReplChecker } from './checker';
import { LiveModules } from './modules';
import { runInput, warmUp } from './run';
import { ReplSession } from './session';

/** Who is asking: the token's name and role, and the connection the session belongs to. */
export interface ReplContext {
  who: string;
  role: Role;
  connectionId: string;
}

/** One audit record per evaluation; `outcome` is 'ok' or the error code. */
export interface ReplAuditRecord {
  who: string;
  op: 'eval';
  session: string;
  code: string;
  outcome: string;
}

export interface ReplServiceOptions {
  engine: Engine;
  root: string;
  /** Per-evaluation timeout when the request gives none (ms, default 2000). */
  defaultTimeoutMs?: number;
  audit?: (record: ReplAuditRecord) => void;
  /** Limits of the type-check service, if the REPL is the first to use it (the pipeline usually is). */
  checker?: CheckerLimits;
}

export interface ReplService {
  /** Open a session owned by the connection; with `generation`, evaluations are pinned to it. */
  open(ctx: ReplContext, generation?: number): string;
  close(session: string, ctx: ReplContext): void;
  /** Evaluate; without `session`, in the connection's default session (created on first use). */
  eval(args: { code: string; session?: string; timeoutMs?: number }, ctx: ReplContext): Promise<EvalResult>;
  /** Drop every session of a closed connection. */
  closeConnection(connectionId: string): void;
  /** Release the type-check service and drop all sessions. */
  dispose(): Promise<void>;
}

const MAX_SESSIONS_PER_CONNECTION = 16;
const MAX_SESSIONS = 256;
/** The audit log keeps the expression, cut to this many characters. */
const MAX_AUDITED_CODE = 8192;

/** Create the REPL service for an engine. */
export function createReplService(opts: ReplServiceOptions): ReplService {
  const modules = new LiveModules(opts.engine, opts.root);
  const checker = new ReplChecker(opts.root, opts.checker);
  const sessions = new Map<string, ReplSession>();
  const defaults = new Map<string, string>();
  const defaultTimeout = opts.defaultTimeoutMs ?? 2000;
  let warmed = false;

  const isLive = (g: number) => opts.engine.liveGenerations().some((l) => l.generation === g);

  function open(ctx: ReplContext, generation?: number): string {
    if (generation !== undefined && !isLive(generation)) {
      throw new LivepatchError('LP_ERR_EVAL_SESSION', `generation ${generation} is not live; cannot pin a session to it`);
    }
    const owned = [...sessions.values()].filter((s) => s.owner === ctx.connectionId).length;
    if (owned >= MAX_SESSIONS_PER_CONNECTION || sessions.size >= MAX_SESSIONS) {
      throw new LivepatchError('LP_ERR_EVAL_SESSION', 'too many REPL sessions; close some first');
    }
    const id = `r${randomBytes(6).toString('hex')}`;
    const s = new ReplSession(id, ctx.connectionId, opts.root, generation);
    if (generation !== undefined) {
      // Keep the generation live for as long as the session is open, so it is not released under it.
      const held = new Promise<void>((resolve) => (s.release = resolve));
      opts.engine.pin(() => held, generation).catch(() => undefined);
    }
    sessions.set(id, s);
    if (!warmed) {
      warmed = true;
      warmUp(checker, modules);
    }
    return id;
  }

  function get(id: string, ctx: ReplContext): ReplSession {
    const s = sessions.get(id);
    // Another connection's session is indistinguishable from a missing one.
    if (!s || s.owner !== ctx.connectionId) throw new LivepatchError('LP_ERR_EVAL_SESSION', `no REPL session ${id} on this connection`);
    return s;
  }

  function drop(s: ReplSession): void {
    sessions.delete(s.id);
    s.release();
    checker.drop(s.file);
    if (defaults.get(s.owner) === s.id) defaults.delete(s.owner);
  }

  function audit(ctx: ReplContext, session: string, code: string, outcome: string): void {
    if (!opts.audit) return;
    const cut = code.length > MAX_AUDITED_CODE ? code.slice(0, MAX_AUDITED_CODE) + '…' : code;
    try {
      opts.audit({ who: ctx.who, op: 'eval', session, code: cut, outcome });
    } catch {
      /* the audit sink reports its own failures; an evaluation result must still go back */
    }
  }

  return {
    open,
    close(id, ctx) {
      drop(get(id, ctx));
    },
    async eval(args, ctx) {
      let sessionId = args.session ?? '';
      let outcome = 'LP_ERR_INTERNAL';
      try {
        let s: ReplSession;
        if (args.session) s = get(args.session, ctx);
        else {
          let d = defaults.get(ctx.connectionId);
          if (!d || !sessions.has(d)) {
            d = open(ctx);
            defaults.set(ctx.connectionId, d);
          }
          s = get(d, ctx);
        }
        sessionId = s.id;
        if (s.generation !== undefined && !isLive(s.generation)) {
          throw new LivepatchError('LP_ERR_EVAL_SESSION', `generation ${s.generation} is no longer live; open a new session`);
        }
        const result = await s.enqueue(() =>
          runInput({
            session: s,
            code: args.code,
            role: ctx.role,
            timeoutMs: args.timeoutMs ?? defaultTimeout,
            modules,
            checker,
            engine: opts.engine,
          }),
        );
        outcome = 'ok';
        return result;
      } catch (e) {
        if (!(e instanceof LivepatchError)) {
          // Only the code goes on the wire; what went wrong is logged here, on the agent.
          process.stderr.write(`livepatch: REPL internal error: ${e instanceof Error ? e.message : String(e)}\n`);
        }
        const err = e instanceof LivepatchError ? e : new LivepatchError('LP_ERR_INTERNAL');
        outcome = err.code;
        throw err;
      } finally {
        audit(ctx, sessionId, args.code, outcome);
      }
    },
    closeConnection(connectionId) {
      for (const s of [...sessions.values()]) if (s.owner === connectionId) drop(s);
      defaults.delete(connectionId);
    },
    async dispose() {
      for (const s of [...sessions.values()]) drop(s);
      await checker.close();
    },
  };
}
