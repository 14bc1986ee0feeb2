/**
 * Per-connection state: who is connected, which request ids are in flight, whether the connection
 * wants events, and the typed send helpers. Sending never throws: a peer that went away simply stops
 * receiving.
 */
import { randomBytes } from 'node:crypto';
import type WebSocket from 'ws';
import type { AgentEvent, AgentMessage, RequestId } from '../../shared/messages';
import { toWireError, type WireError } from '../../shared/errors';
import type { Principal } from './auth';

export class ClientConnection {
  /** Opaque id, used to scope REPL sessions to their connection. */
  readonly id = randomBytes(8).toString('hex');
  readonly ws: WebSocket;
  readonly remote: string;
  principal: Principal | undefined;
  /** Request ids awaiting their one final reply. */
  readonly inflight = new Set<RequestId>();
  subscribed = false;
  /** Set by each pong; cleared by each heartbeat ping. */
  alive = true;
  lastActivity = Date.now();
  closed = false;

  readonly #maxBuffered: number;

  constructor(ws: WebSocket, remote: string, maxBufferedBytes = Infinity) {
    this.ws = ws;
    this.remote = remote;
    this.#maxBuffered = maxBufferedBytes;
  }

  /** Who to name in audit records and op contexts. */
  get who(): string {
    return this.principal?.name ?? '-';
  }

  send(msg: AgentMessage): void {
    if (this.closed || this.ws.readyState !== 1 /* OPEN */) return;
    // A client that sends requests but never reads the replies would grow this process's memory.
    if (this.ws.bufferedAmount > this.#maxBuffered) {
      this.close(1008, 'replies are not being read');
      return;
    }
    try {
      this.ws.send(JSON.stringify(msg), (err) => {
        if (err) this.close(1011, 'send failed');
      });
    } catch {
      this.close(1011, 'send failed');
    }
  }

  replyOk(id: RequestId | null, result: unknown): void {
    this.send({ type: 'reply', id, ok: true, result });
  }

  replyError(id: RequestId | null, err: unknown): void {
    const error: WireError = toWireError(err);
    this.send({ type: 'reply', id, ok: false, error });
  }

  progress(id: RequestId, step: string, message: string, fraction?: number): void {
    this.send({ type: 'progress', id, step, message, ...(fraction !== undefined ? { fraction } : {}) });
  }

  event(event: AgentEvent): void {
    if (this.subscribed) this.send({ type: 'event', event });
  }

  /**
   * Close with a code and a short reason (WebSocket reasons are limited to 123 bytes). A peer that does
   * not answer the close frame is cut after `graceMs`.
   */
  close(code: number, reason = '', graceMs = 2000): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.ws.close(code, Buffer.from(reason).subarray(0, 120).toString());
    } catch {
      this.ws.terminate();
    }
    // A peer that never answers the close frame must not hold the socket forever.
    setTimeout(() => this.ws.terminate(), graceMs).unref();
  }
}
