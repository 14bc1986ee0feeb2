/**
 * One accepted WebSocket, from `hello` to close: connection limit, lockout, handshake with timeout,
 * then every frame to dispatch. Every callback is wrapped so a failure is logged and contained; the
 * host process never sees an exception from here.
 */
import type { IncomingMessage } from 'node:http';
import type WebSocket from 'ws';
import { newNonce } from '../../shared/auth';
import { LivepatchError } from '../../shared/errors';
import { CLOSE, type HelloMessage } from '../../shared/messages';
import { PACKAGE_VERSION, PROTOCOL_VERSION } from '../../shared/version';
import { checkAuthFrame } from './auth';
import type { AgentContext } from './context';
import { dispatchFrame } from './dispatch';
import { Session } from './session';

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

/** Take over a freshly upgraded socket. */
export function acceptConnection(ctx: AgentContext, ws: WebSocket, remote: string): void {
  const session = new Session(ws, remote, ctx.opts.maxBufferedBytes);
  ctx.sessions.add(session);
  ws.on('error', () => {
    /* the close event follows; nothing to report to the host */
  });
  ws.on('pong', () => {
    session.alive = true;
  });
  ws.on('close', () =>
    contained('connection close', () => {
      session.closed = true;
      ctx.sessions.delete(session);
      clearTimeout(timer);
      if (ctx.hasRepl()) ctx.repl().closeConnection(session.id);
    }),
  );

  let timer: NodeJS.Timeout | undefined;
  if (ctx.sessions.size > ctx.opts.maxConnections) {
    session.close(CLOSE.TOO_MANY_CONNECTIONS, `the agent accepts at most ${ctx.opts.maxConnections} connections`);
    return;
  }
  const locked = ctx.lockout.lockedFor(remote);
  if (locked > 0) {
    if (ctx.auditThrottle.allow(`locked ${remote}`)) ctx.audit.append({ who: '-', remote, op: 'auth', outcome: 'LP_ERR_AUTH_LOCKED', detail: 'refused while locked out (recorded once a minute per address)' });
    session.close(CLOSE.LOCKED_OUT, `too many failed attempts from ${remote}; try again in ${Math.ceil(locked / 1000)} s`);
    return;
  }

  const nonce = newNonce();
  let failed = false;
  const hello: HelloMessage = { type: 'hello', protocol: PROTOCOL_VERSION, agentVersion: PACKAGE_VERSION, auth: 'scram-sha256', nonce };
  session.send(hello);
  timer = setTimeout(() => {
    if (session.principal || failed) return;
    failed = true;
    // Holding unauthenticated sockets open uses up the connection limit, so it counts as a failure.
    const lockedNow = ctx.lockout.fail(remote);
    ctx.audit.append({ who: '-', remote, op: 'auth', outcome: 'LP_ERR_AUTH_REQUIRED', detail: `no auth message in time${lockedNow ? '; address locked out' : ''}` });
    session.close(CLOSE.AUTH_TIMEOUT, 'no auth message in time');
  }, ctx.opts.handshakeTimeoutMs);
  timer.unref();

  ws.on('message', (data, isBinary) =>
    contained('message handler', () => {
      if (failed || session.closed) return;
      session.lastActivity = Date.now();
      const text = isBinary ? null : data.toString();
      if (session.principal) {
        if (text === null) {
          session.replyError(null, new LivepatchError('LP_ERR_PROTO_BAD_MESSAGE', 'binary frames are not accepted'));
          return;
        }
        dispatchFrame(ctx, session, text);
        return;
      }
      clearTimeout(timer);
      const outcome = text === null ? ({ ok: false, reason: 'denied', message: 'binary auth frame' } as const) : checkAuthFrame(text, nonce, ctx.tokens);
      if (outcome.ok) {
        ctx.lockout.succeed(remote);
        session.principal = outcome.principal;
        ctx.audit.append({ who: outcome.principal.name, remote, op: 'auth', outcome: 'ok' });
        session.send({ type: 'welcome', name: outcome.principal.name, role: outcome.principal.role });
        return;
      }
      failed = true;
      if (outcome.reason === 'protocol') {
        ctx.audit.append({ who: '-', remote, op: 'auth', outcome: 'LP_ERR_PROTO_VERSION', detail: outcome.message });
        session.close(CLOSE.PROTOCOL_VERSION, outcome.message);
        return;
      }
      const lockedNow = ctx.lockout.fail(remote);
      const tokenId = 'tokenId' in outcome ? outcome.tokenId : undefined;
      ctx.audit.append({ who: '-', remote, op: 'auth', outcome: 'LP_ERR_AUTH_DENIED', detail: `${outcome.message}${tokenId ? ` (token id ${tokenId})` : ''}${lockedNow ? '; address locked out' : ''}` });
      // The delay slows guessing; the lockout stops it.
      setTimeout(() => session.close(CLOSE.AUTH_FAILED, 'unknown or wrong token'), ctx.opts.authFailDelayMs).unref();
    }),
  );
}
