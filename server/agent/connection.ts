/**
 * One accepted WebSocket, from `hello` to close: the unauthenticated budget, the handshake with its
 * timeout and small frame limit, the lockout of token ids per address, the connection limit, then
 * every frame to dispatch. Every callback is wrapped so a failure is logged and contained; the host
 * process never sees an exception from here.
 *
 * Before authentication a peer holds nothing an operator needs: unauthenticated sockets have their
 * own small budget (the oldest is closed to make room for a new one), may send only a few KiB, and
 * are closed quickly when silent. Only a wrong proof for a token id counts toward a lockout, and only
 * for that token id at that address. Their audit records are aggregated (RefusalAudit).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { newNonce } from '../../shared/auth';
import { LivepatchError } from '../../shared/errors';
import { CLOSE, frameText, type HelloMessage } from '../../shared/messages';
import { PACKAGE_VERSION, PROTOCOL_VERSION } from '../../shared/version';
import { parseAuthFrame, verifyAuth } from './auth';
import type { AgentContext } from './context';
import { dispatchFrame } from './dispatch';
import { ClientConnection } from './client-connection';

/** The peer's address for lockout and audit (`unix` for Unix-socket peers). */
export function remoteOf(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unix';
}

function contained(what: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    process.stderr.write(`livepatch: error in ${what}: ${(e as Error)?.stack ?? String(e)}\n`);
  }
}

/** Before authentication, a peer that does not answer our close frame is cut after this long. */
const PRE_AUTH_GRACE_MS = 250;

let warnedFrameLimit = false;

/**
 * Set this socket's frame-size limit. The WebSocket library takes one limit per server; the agent
 * lowers it per socket until the peer authenticates and raises it afterwards. Returns false when the
 * library does not expose the per-socket limit (then the server-wide limit alone applies).
 */
export function setFrameLimit(ws: WebSocket, bytes: number): boolean {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') return false;
  receiver._maxPayload = bytes;
  return true;
}

function authenticatedCount(ctx: AgentContext): number {
  let n = 0;
  for (const s of ctx.sessions) if (s.principal && !s.closed) n++;
  return n;
}

/**
 * Take over a freshly upgraded socket. `socket` is the request's socket, paused when a peer that has
 * not authenticated breaks a WebSocket limit, so the rest of an oversized frame is not even read.
 */
export function acceptConnection(ctx: AgentContext, ws: WebSocket, remote: string, socket?: Duplex): void {
  const session = new ClientConnection(ws, remote, ctx.opts.maxBufferedBytes);
  ctx.sessions.add(session);
  ctx.unauthenticated.add(session);
  let timer: NodeJS.Timeout | undefined;
  let failed = false;
  ws.on('error', () => {
    // The WebSocket layer has sent its close frame (1009, 1008, 1002) and would go on reading and
    // discarding until the peer answers it. Before authentication, stop reading and cut the socket.
    if (session.principal) return;
    failed = true;
    clearTimeout(timer);
    ctx.unauthenticated.delete(session);
    setImmediate(() => socket?.pause());
    setTimeout(() => ws.terminate(), PRE_AUTH_GRACE_MS).unref();
  });
  ws.on('pong', () => {
    session.alive = true;
  });
  ws.on('close', () =>
    contained('connection close', () => {
      session.closed = true;
      ctx.sessions.delete(session);
      ctx.unauthenticated.delete(session);
      clearTimeout(timer);
      if (ctx.hasRepl()) ctx.repl().closeConnection(session.id);
    }),
  );

  if (!setFrameLimit(ws, Math.min(ctx.opts.maxPreAuthPayload, ctx.opts.maxPayload)) && !warnedFrameLimit) {
    warnedFrameLimit = true;
    process.stderr.write(
      'livepatch: warning: this version of ws does not allow a per-socket frame limit; the pre-authentication limit is not applied\n',
    );
  }

  // The unauthenticated budget is full: the oldest unauthenticated socket makes room. An operator's
  // handshake takes one round trip, so a peer holding silent sockets cannot keep it out.
  if (ctx.unauthenticated.size > ctx.opts.maxUnauthenticated) {
    const oldest = ctx.unauthenticated.values().next().value as ClientConnection;
    ctx.unauthenticated.delete(oldest);
    ctx.refusals.note({
      remote: oldest.remote,
      op: 'auth',
      outcome: 'LP_ERR_AUTH_REQUIRED',
      detail: 'closed unauthenticated to make room for a new connection',
    });
    oldest.close(CLOSE.AUTH_TIMEOUT, 'too many unauthenticated connections; closed to make room', PRE_AUTH_GRACE_MS);
  }

  const nonce = newNonce();
  /** End the handshake without a principal: out of the budget, recorded (aggregated), closed. */
  const refuse = (outcome: string, detail: string, code: number, reason: string, tokenId?: string) => {
    failed = true;
    clearTimeout(timer);
    ctx.unauthenticated.delete(session);
    ctx.refusals.note({ remote, op: 'auth', outcome, detail, ...(tokenId ? { tokenId } : {}) });
    session.close(code, reason, PRE_AUTH_GRACE_MS);
  };

  const hello: HelloMessage = { type: 'hello', protocol: PROTOCOL_VERSION, agentVersion: PACKAGE_VERSION, auth: 'scram-sha256', nonce };
  session.send(hello);
  timer = setTimeout(() => {
    if (session.principal || failed || session.closed) return;
    refuse('LP_ERR_AUTH_REQUIRED', 'no auth message in time', CLOSE.AUTH_TIMEOUT, 'no auth message in time');
  }, ctx.opts.handshakeTimeoutMs);
  timer.unref();

  ws.on('message', (data, isBinary) =>
    contained('message handler', () => {
      if (failed || session.closed) return;
      session.lastActivity = Date.now();
      const text = isBinary ? null : frameText(data);
      if (session.principal) {
        if (text === null) {
          session.replyError(null, new LivepatchError('LP_ERR_PROTO_BAD_MESSAGE', 'binary frames are not accepted'));
          return;
        }
        dispatchFrame(ctx, session, text);
        return;
      }
      const parsed = parseAuthFrame(text);
      if (!parsed.ok) {
        // Junk is closed like a failed handshake but never counts toward a lockout.
        if (parsed.reason === 'protocol') refuse('LP_ERR_PROTO_VERSION', parsed.message, CLOSE.PROTOCOL_VERSION, parsed.message);
        else refuse('LP_ERR_AUTH_REQUIRED', parsed.message, CLOSE.AUTH_FAILED, 'expected an auth message');
        return;
      }
      const { tokenId } = parsed.msg;
      const locked = ctx.lockout.lockedFor(tokenId, remote);
      if (locked > 0) {
        refuse(
          'LP_ERR_AUTH_LOCKED',
          `token id ${tokenId} refused while locked out at this address`,
          CLOSE.LOCKED_OUT,
          `too many failed attempts for this token from ${remote}; try again in ${Math.ceil(locked / 1000)} s`,
          tokenId,
        );
        return;
      }
      const principal = verifyAuth(parsed.msg, nonce, ctx.tokens);
      if (!principal) {
        failed = true;
        clearTimeout(timer);
        ctx.unauthenticated.delete(session);
        const lockedNow = ctx.lockout.fail(tokenId, remote);
        ctx.refusals.note({
          remote,
          op: 'auth',
          outcome: 'LP_ERR_AUTH_DENIED',
          detail: `unknown or wrong token (token id ${tokenId})${lockedNow ? '; token id locked out at this address' : ''}`,
          tokenId,
        });
        // The delay slows guessing; the lockout stops it.
        setTimeout(() => session.close(CLOSE.AUTH_FAILED, 'unknown or wrong token', PRE_AUTH_GRACE_MS), ctx.opts.authFailDelayMs).unref();
        return;
      }
      ctx.lockout.succeed(tokenId, remote);
      if (authenticatedCount(ctx) >= ctx.opts.maxConnections) {
        refuse(
          'LP_ERR_LIMIT_CONNECTIONS',
          `token ${principal.name}: connection limit reached`,
          CLOSE.TOO_MANY_CONNECTIONS,
          `the agent accepts at most ${ctx.opts.maxConnections} connections`,
        );
        return;
      }
      clearTimeout(timer);
      ctx.unauthenticated.delete(session);
      session.principal = principal;
      setFrameLimit(ws, ctx.opts.maxPayload);
      ctx.audit.append({ who: principal.name, remote, op: 'auth', outcome: 'ok' });
      session.send({ type: 'welcome', name: principal.name, role: principal.role });
    }),
  );
}
