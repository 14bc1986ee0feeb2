/**
 * The listening socket: HTTP(S) on TCP or a Unix socket, the WebSocket upgrade (ws in noServer mode),
 * the Origin check, heartbeat and idle sweeps.
 *
 * Connections that have not completed their upgrade request (slowloris) have a budget and a deadline
 * of their own: at most maxPendingUpgrades, the oldest dropped to make room for a new one, each cut
 * after upgradeTimeoutMs. A hard cap on all sockets (`server.maxConnections`) bounds the file
 * descriptors the agent can take from its host.
 *
 * Browsers always send Origin on a WebSocket upgrade and CLI clients send none, so any Origin not
 * explicitly allowed is refused with HTTP 403 before a socket opens: a web page the operator visits
 * cannot talk to the agent. The server is unref'd so the agent never keeps a finished host alive.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { chmodSync, statSync, unlinkSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { CLOSE } from '../../shared/messages';
import { formatTarget } from '../../shared/target';
import type { AgentContext } from './context';

export interface Listener {
  /** `host:port` (actual port) or `unix:/path`. */
  readonly address: string;
  close(): Promise<void>;
}

function refuse(socket: Duplex, status: string, body: string): void {
  try {
    socket.end(
      `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  } catch {
    socket.destroy();
  }
}

/** A Unix socket path left behind by a dead process is removed; a live one is an error. */
function clearStaleSocket(path: string): Promise<void> {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return Promise.resolve();
  if (!st.isSocket()) return Promise.reject(new Error(`${path} exists and is not a socket`));
  return new Promise((resolve, reject) => {
    const probe: Socket = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      reject(new Error(`another process is listening on unix:${path}`));
    });
    probe.once('error', () => {
      try {
        unlinkSync(path);
        resolve();
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}

/** Listen and route upgrades to `onSocket`. Rejects with a readable Error if the address is unusable. */
export async function listen(ctx: AgentContext, onSocket: (ws: WebSocket, req: IncomingMessage) => void): Promise<Listener> {
  const { opts } = ctx;
  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }) : createHttpServer();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: opts.maxPayload,
    maxFragments: opts.maxFragments,
    perMessageDeflate: false,
    clientTracking: false,
  });
  server.maxConnections = hardConnectionCap(opts);

  // TCP connections whose upgrade request is not complete yet, oldest first, with their deadlines.
  const upgrading = new Map<Socket, NodeJS.Timeout>();
  const drop = (socket: Socket, detail: string) => {
    const t = upgrading.get(socket);
    if (t) clearTimeout(t);
    upgrading.delete(socket);
    ctx.refusals.note({ remote: socket.remoteAddress ?? 'unix', op: 'upgrade', outcome: 'LP_ERR_CONN_TIMEOUT', detail });
    socket.destroy();
  };
  server.on('connection', (socket: Socket) => {
    if (upgrading.size >= opts.maxPendingUpgrades) {
      drop(upgrading.keys().next().value as Socket, 'upgrade request incomplete; dropped to make room for a new connection');
    }
    const timer = setTimeout(() => {
      if (upgrading.has(socket)) drop(socket, `upgrade request incomplete after ${opts.upgradeTimeoutMs} ms`);
    }, opts.upgradeTimeoutMs);
    timer.unref();
    upgrading.set(socket, timer);
    socket.once('close', () => {
      clearTimeout(timer);
      upgrading.delete(socket);
    });
  });
  /** The request is complete: the socket leaves the upgrade budget (TLS sockets wrap the raw one). */
  const upgraded = (socket: Duplex) => {
    for (const s of [socket, (socket as { _parent?: unknown })._parent]) {
      const t = upgrading.get(s as Socket);
      if (t) {
        clearTimeout(t);
        upgrading.delete(s as Socket);
      }
    }
  };
  server.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' }).end('livepatch agent: connect with a WebSocket client\n');
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    upgraded(socket);
    try {
      const origin = req.headers.origin;
      if (origin !== undefined && !opts.allowedOrigins.includes(origin)) {
        const remote = req.socket.remoteAddress ?? 'unix';
        const shown = String(origin).slice(0, 200);
        ctx.refusals.note({ remote, op: 'connect', outcome: 'LP_ERR_AUTH_ORIGIN', detail: `origin ${shown}` });
        refuse(socket, '403 Forbidden', 'cross-origin connections to the livepatch agent are refused\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => onSocket(ws, req));
    } catch (e) {
      process.stderr.write(`livepatch: upgrade failed: ${(e as Error).message}\n`);
      socket.destroy();
    }
  });

  const t = opts.target;
  if (t.kind === 'unix') await clearStaleSocket(t.path);
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'EADDRINUSE'
          ? 'the address is in use'
          : e.code === 'EACCES'
            ? 'permission denied'
            : e.code === 'EADDRNOTAVAIL'
              ? 'no such local address'
              : (e.code ?? e.message);
      reject(new Error(`cannot listen on ${formatTarget(t)}: ${why}`));
    };
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (t.kind === 'unix') server.listen(t.path, done);
    else server.listen(t.port, t.host, done);
  });
  server.on('error', (e) => process.stderr.write(`livepatch: agent server error: ${e.message}\n`));
  if (t.kind === 'unix') chmodSync(t.path, 0o600);
  server.unref();

  const heartbeat = setInterval(() => {
    for (const s of ctx.sessions) {
      if (!s.alive) {
        s.ws.terminate();
        continue;
      }
      s.alive = false;
      try {
        s.ws.ping();
      } catch {
        s.ws.terminate();
      }
    }
  }, opts.heartbeatMs);
  heartbeat.unref();
  const idle = opts.idleTimeoutMs > 0 ? setInterval(() => sweepIdle(ctx), Math.max(100, Math.floor(opts.idleTimeoutMs / 4))) : undefined;
  idle?.unref();

  const addr = server.address();
  const address =
    t.kind === 'unix'
      ? `unix:${t.path}`
      : formatTarget({ kind: 'tcp', host: t.host, port: typeof addr === 'object' && addr ? addr.port : t.port });
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(heartbeat);
        if (idle) clearInterval(idle);
        for (const s of ctx.sessions) s.close(CLOSE.AGENT_STOPPING, 'the agent is stopping');
        server.close(() => resolve());
        for (const s of [...upgrading.keys()]) s.destroy();
        // Sockets that ignore the close frame are cut after a grace period.
        setTimeout(() => {
          for (const s of ctx.sessions) s.ws.terminate();
          resolve();
        }, 2500).unref();
      }),
  };
}

/**
 * All sockets the agent's server holds at once: authenticated and unauthenticated connections,
 * pending upgrade requests, and room for sockets that are closing. Beyond it, new TCP connections
 * are closed on accept.
 */
export function hardConnectionCap(opts: { maxConnections: number; maxUnauthenticated: number; maxPendingUpgrades: number }): number {
  return opts.maxConnections + opts.maxUnauthenticated + opts.maxPendingUpgrades + 128;
}

/** Close authenticated connections that sent nothing for idleTimeoutMs; subscribers and busy ones stay. */
function sweepIdle(ctx: AgentContext): void {
  const now = Date.now();
  for (const s of ctx.sessions) {
    if (!s.principal || s.subscribed || s.inflight.size > 0) continue;
    if (now - s.lastActivity > ctx.opts.idleTimeoutMs) s.close(CLOSE.IDLE, 'idle timeout');
  }
}
