/**
 * A REPL session on a remote agent: opens a session (its own declarations, optionally pinned to a
 * generation), evaluates TypeScript in it and closes it. Shared by `livepatch repl` and the TUI's
 * REPL pane, so both behave the same.
 */
import type { AgentClient } from '../connection';
import { LivepatchError, type EvalResult } from '../../shared';

/** One remote REPL session over an authenticated AgentClient. */
export class RemoteRepl {
  readonly client: AgentClient;
  #session: string | undefined;

  constructor(client: AgentClient) {
    this.client = client;
  }

  /** The session id once open. */
  get session(): string | undefined {
    return this.#session;
  }

  /** Open the session; with `generation`, evaluations run pinned to that live generation. */
  async open(generation?: number): Promise<void> {
    if (this.#session) return;
    const res = await this.client.request('repl-open', generation !== undefined ? { generation } : {});
    this.#session = res.session;
  }

  /**
   * Evaluate TypeScript in the session. Rejects with a LivepatchError: LP_ERR_EVAL_TYPE (details.diagnostics),
   * LP_ERR_EVAL_THROWN, LP_ERR_EVAL_TIMEOUT, LP_ERR_EVAL_SIDE_EFFECT, LP_ERR_EVAL_SESSION, or a connection error.
   */
  async eval(code: string, timeoutMs?: number): Promise<EvalResult> {
    if (!this.#session) throw new LivepatchError('LP_ERR_EVAL_SESSION', 'the REPL session is not open');
    return this.client.request('eval', {
      code,
      session: this.#session,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
  }

  /** Close the session on the agent (best effort: a closed connection already dropped it). */
  async close(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    if (!session || this.client.closed) return;
    try {
      await this.client.request('repl-close', { session });
    } catch {
      /* the agent drops a connection's sessions when it closes anyway */
    }
  }
}
