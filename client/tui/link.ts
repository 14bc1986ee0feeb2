/**
 * The TUI's connection to the agent: connects, subscribes to events, and when the connection drops
 * reports it and reconnects with exponential backoff (0.5 s doubling to 8 s), forever, until closed.
 * State changes go out as reducer actions; everything else (requests) goes through `client()`.
 */
import type { AgentClient } from '../connection';
import { LivepatchError, type AgentEvent } from '../../shared';
import type { Action } from './actions';

export type Connector = () => Promise<AgentClient>;

export interface LinkHooks {
  dispatch(a: Action): void;
  /** Called after every successful (re)connect and subscribe. */
  onConnected(client: AgentClient): void;
  onEvent(e: AgentEvent): void;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 8000;

/** Owns the current AgentClient and the reconnect loop. */
export class AgentLink {
  #connect: Connector;
  #hooks: LinkHooks;
  #client: AgentClient | undefined;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(connect: Connector, hooks: LinkHooks) {
    this.#connect = connect;
    this.#hooks = hooks;
  }

  /** The live client, or a LP_ERR_CONN_CLOSED error the controller shows as a notice. */
  client(): AgentClient {
    if (!this.#client || this.#client.closed) throw new LivepatchError('LP_ERR_CONN_CLOSED', 'not connected to the agent (reconnecting)');
    return this.#client;
  }

  get connected(): boolean {
    return !!this.#client && !this.#client.closed;
  }

  /** First connection: rejects on failure so `attach` can exit with the right code. */
  async start(): Promise<void> {
    this.#hooks.dispatch({ type: 'connecting', attempt: 0 });
    const c = await this.#connect();
    await this.#adopt(c);
  }

  async #adopt(c: AgentClient): Promise<void> {
    if (this.#closed) {
      c.close();
      return;
    }
    this.#client = c;
    this.#attempt = 0;
    c.on('event', (e: AgentEvent) => this.#hooks.onEvent(e));
    c.once('close', (info: { code: number; reason: string }) => {
      if (this.#client === c) this.#client = undefined;
      this.#lost(`connection closed (${info.code}${info.reason ? ': ' + info.reason : ''})`);
    });
    this.#hooks.dispatch({ type: 'connected', name: c.name, role: c.role });
    try {
      await c.request('subscribe', {});
    } catch {
      /* a failed subscribe surfaces as a close; the reconnect subscribes again */
    }
    this.#hooks.onConnected(c);
  }

  #lost(reason: string): void {
    if (this.#closed) return;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.#attempt);
    this.#attempt++;
    this.#hooks.dispatch({ type: 'disconnected', reason, retryInMs: delay });
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#retry(), delay);
  }

  async #retry(): Promise<void> {
    if (this.#closed) return;
    this.#hooks.dispatch({ type: 'connecting', attempt: this.#attempt });
    let c: AgentClient;
    try {
      c = await this.#connect();
    } catch (e) {
      this.#lost(e instanceof Error ? e.message : String(e));
      return;
    }
    await this.#adopt(c);
  }

  /** Stop reconnecting and close the connection. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#client?.close();
    this.#client = undefined;
  }
}
