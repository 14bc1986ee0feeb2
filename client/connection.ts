/**
 * The client side of the agent protocol: connect, authenticate, correlate replies, receive events.
 * Used by the CLI, the TUI and the REPL. Every failure surfaces as a LivepatchError with a registry
 * code, so callers map it to an exit code and a one-line message.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import {
  CLOSE,
  OPS,
  LivepatchError,
  PROTOCOL_VERSION,
  SLOW_OP_TIMEOUT_MS,
  computeProof,
  formatTarget,
  isCompatible,
  newNonce,
  frameText,
  parseFrame,
  parseTarget,
  parseToken,
  type AgentEvent,
  type AgentMessage,
  type HelloMessage,
  type OpArgs,
  type OpName,
  type OpResults,
  type ProgressMessage,
  type Role,
  type Target,
  type WelcomeMessage,
} from '../shared';

export interface ConnectOptions {
  /** The token (`lp_<id>_<secret>`). */
  token: string;
  /** Connect + handshake timeout, and default per-request timeout (ms). */
  timeoutMs?: number;
  /** Use wss:// (the agent serves TLS). */
  tls?: boolean;
  /** CA certificate(s) (PEM) to trust for wss. */
  ca?: string | Buffer;
  /** Maximum frame size accepted from the agent. */
  maxPayload?: number;
}

export interface RequestOptions {
  onProgress?: (p: ProgressMessage) => void;
  /** Per-request timeout (ms); 0 disables. Defaults to 10 minutes for patch ops, else ConnectOptions.timeoutMs. */
  timeoutMs?: number;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: LivepatchError) => void;
  onProgress?: (p: ProgressMessage) => void;
  timer?: NodeJS.Timeout;
}

/**
 * One authenticated connection to an agent. Emits `event` (AgentEvent) after `subscribe`, and
 * `close` ({ code, reason }) when the socket closes.
 */
export class AgentClient extends EventEmitter {
  readonly target: Target;
  readonly hello: HelloMessage;
  readonly name: string;
  readonly role: Role;
  #ws: WebSocket;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #timeoutMs: number;
  #closed = false;

  private constructor(target: Target, ws: WebSocket, hello: HelloMessage, welcome: WelcomeMessage, timeoutMs: number) {
    super();
    this.target = target;
    this.hello = hello;
    this.name = welcome.name;
    this.role = welcome.role;
    this.#ws = ws;
    this.#timeoutMs = timeoutMs;
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('close', (code, reason) => this.#onClose(code, reason.toString()));
    ws.on('error', () => {
      /* surfaced through close */
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Connect to `target` (`host:port` or `unix:/path`) and authenticate. */
  static connect(targetText: string, opts: ConnectOptions): Promise<AgentClient> {
    const target = parseTarget(targetText);
    if (!target)
      return Promise.reject(
        new LivepatchError('LP_ERR_PROTO_BAD_MESSAGE', `invalid agent address "${targetText}": use host:port or unix:/path`),
      );
    const token = parseToken(opts.token);
    if (!token) return Promise.reject(new LivepatchError('LP_ERR_AUTH_DENIED', 'the token is malformed (expected lp_<id>_<secret>)'));
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const scheme = opts.tls ? 'wss' : 'ws';
    const url = target.kind === 'unix' ? `ws+unix://${target.path}:/livepatch` : `${scheme}://${formatTarget(target)}/livepatch`;
    return new Promise<AgentClient>((resolve, reject) => {
      const ws = new WebSocket(url, {
        handshakeTimeout: timeoutMs,
        maxPayload: opts.maxPayload ?? 64 * 1024 * 1024,
        ...(opts.ca ? { ca: opts.ca } : {}),
      });
      let hello: HelloMessage | undefined;
      let settled = false;
      const fail = (e: LivepatchError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.removeAllListeners();
        ws.on('error', () => {});
        ws.terminate();
        reject(e);
      };
      const timer = setTimeout(
        () => fail(new LivepatchError('LP_ERR_CONN_TIMEOUT', `timed out connecting to ${targetText} after ${timeoutMs} ms`)),
        timeoutMs,
      );
      ws.on('error', (err: NodeJS.ErrnoException) => {
        const code = err.code ?? '';
        if (code === 'ECONNREFUSED' || code === 'ENOENT')
          fail(
            new LivepatchError(
              'LP_ERR_CONN_REFUSED',
              `cannot connect to ${targetText}: nothing is listening there (is the app running with the agent enabled?)`,
            ),
          );
        else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
          fail(new LivepatchError('LP_ERR_CONN_REFUSED', `cannot resolve host in ${targetText}`));
        else if (/Unexpected server response: 403/.test(err.message))
          fail(
            new LivepatchError(
              'LP_ERR_AUTH_ORIGIN',
              `the agent at ${targetText} refused the connection (HTTP 403: cross-origin connections are refused)`,
            ),
          );
        else fail(new LivepatchError('LP_ERR_CONN_REFUSED', `cannot connect to ${targetText}: ${err.message}`));
      });
      ws.on('close', (code, reason) => {
        const text = reason.toString();
        if (code === CLOSE.AUTH_FAILED)
          fail(new LivepatchError('LP_ERR_AUTH_DENIED', `authentication failed at ${targetText}: ${text || 'unknown or wrong token'}`));
        else if (code === CLOSE.LOCKED_OUT) fail(new LivepatchError('LP_ERR_AUTH_LOCKED', text || undefined));
        else if (code === CLOSE.PROTOCOL_VERSION)
          fail(new LivepatchError('LP_ERR_PROTO_VERSION', `the agent at ${targetText} speaks another protocol version: ${text}`));
        else if (code === CLOSE.TOO_MANY_CONNECTIONS) fail(new LivepatchError('LP_ERR_LIMIT_CONNECTIONS', text || undefined));
        else
          fail(
            new LivepatchError(
              'LP_ERR_CONN_CLOSED',
              `the agent at ${targetText} closed the connection during the handshake (${code}${text ? ': ' + text : ''})`,
            ),
          );
      });
      ws.on('message', (data, isBinary) => {
        if (isBinary) return fail(new LivepatchError('LP_ERR_PROTO_BAD_MESSAGE', 'binary frame from agent'));
        const parsed = parseFrame(frameText(data));
        if (!parsed.ok) return fail(new LivepatchError('LP_ERR_PROTO_BAD_MESSAGE', `bad frame from agent: ${parsed.reason}`));
        const msg = parsed.value as AgentMessage;
        if (!hello) {
          if (msg.type !== 'hello')
            return fail(new LivepatchError('LP_ERR_PROTO_BAD_MESSAGE', 'the peer is not a livepatch agent (no hello)'));
          hello = msg;
          if (!isCompatible(hello.protocol)) {
            return fail(
              new LivepatchError(
                'LP_ERR_PROTO_VERSION',
                `the agent at ${targetText} speaks protocol ${hello.protocol}, this client speaks ${PROTOCOL_VERSION}: upgrade the older side`,
              ),
            );
          }
          const clientNonce = newNonce();
          ws.send(
            JSON.stringify({
              type: 'auth',
              protocol: PROTOCOL_VERSION,
              tokenId: token.id,
              clientNonce,
              proof: computeProof(token, hello.nonce, clientNonce),
            }),
          );
          return;
        }
        if (msg.type === 'welcome') {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          ws.removeAllListeners();
          resolve(new AgentClient(target, ws, hello, msg, timeoutMs));
          return;
        }
        if (msg.type === 'reply' && !msg.ok) return fail(LivepatchError.fromWire(msg.error));
        fail(new LivepatchError('LP_ERR_PROTO_BAD_MESSAGE', `unexpected ${msg.type} during the handshake`));
      });
    });
  }

  /** Send one op and wait for its reply. Rejects with the agent's LivepatchError on an error reply. */
  request<O extends OpName>(op: O, args: OpArgs<O>, opts: RequestOptions = {}): Promise<OpResults[O]> {
    if (this.#closed) return Promise.reject(new LivepatchError('LP_ERR_CONN_CLOSED'));
    const id = this.#nextId++;
    return new Promise<OpResults[O]>((resolve, reject) => {
      const p: Pending = { resolve: resolve as (v: unknown) => void, reject, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) };
      const t = opts.timeoutMs ?? (OPS[op].slow ? SLOW_OP_TIMEOUT_MS : this.#timeoutMs);
      if (t > 0) {
        p.timer = setTimeout(() => {
          this.#pending.delete(id);
          reject(new LivepatchError('LP_ERR_CONN_TIMEOUT', `no reply to ${op} after ${t} ms`));
        }, t);
      }
      this.#pending.set(id, p);
      this.#ws.send(JSON.stringify({ type: 'request', id, op, args }), (err) => {
        if (err) this.#settle(id, new LivepatchError('LP_ERR_CONN_CLOSED', `could not send ${op}: ${err.message}`));
      });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#ws.close(CLOSE.NORMAL);
  }

  #settle(id: number, err: LivepatchError | null, result?: unknown): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(result);
  }

  #onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (isBinary) return;
    const parsed = parseFrame(frameText(data), 256);
    if (!parsed.ok) return;
    const msg = parsed.value as AgentMessage;
    if (msg.type === 'reply') {
      if (typeof msg.id !== 'number') return;
      if (msg.ok) this.#settle(msg.id, null, msg.result);
      else this.#settle(msg.id, LivepatchError.fromWire(msg.error));
    } else if (msg.type === 'progress') {
      if (typeof msg.id === 'number') this.#pending.get(msg.id)?.onProgress?.(msg);
    } else if (msg.type === 'event') {
      this.emit('event', msg.event as AgentEvent);
    }
  }

  #onClose(code: number, reason: string): void {
    this.#closed = true;
    for (const id of [...this.#pending.keys()]) {
      this.#settle(id, new LivepatchError('LP_ERR_CONN_CLOSED', `the agent closed the connection (${code}${reason ? ': ' + reason : ''})`));
    }
    this.emit('close', { code, reason });
  }
}

/**
 * The token for a client: `--token-file` wins, else LIVEPATCH_TOKEN. Never argv.
 * Throws LP_ERR_AUTH_NO_TOKEN when neither is set.
 */
export function resolveToken(tokenFile?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (tokenFile) {
    try {
      return readFileSync(tokenFile, 'utf8').trim();
    } catch (e) {
      throw new LivepatchError(
        'LP_ERR_AUTH_NO_TOKEN',
        `cannot read token file ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      );
    }
  }
  const t = env['LIVEPATCH_TOKEN'];
  if (t && t.trim()) return t.trim();
  throw new LivepatchError('LP_ERR_AUTH_NO_TOKEN');
}
