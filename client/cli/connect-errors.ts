/**
 * Connection failures the user can fix, reworded to say what to do. The connection layer reports
 * what happened on the socket; here that becomes advice: use the agent's address, not the app's;
 * trust the certificate with --ca; add --tls. All stay connection errors (exit 4).
 */
import { LivepatchError } from '../../shared';

const AGENT_HINT = 'use the address the agent printed at start ("livepatch: agent listening on HOST:PORT"), not the app\'s own port';

/** `e` reworded when it is one of the fixable cases above; otherwise `e` unchanged. */
export function explainConnectError(target: string, tls: boolean, e: unknown): unknown {
  if (!(e instanceof LivepatchError)) return e;
  const http = /Unexpected server response: (\d+)/.exec(e.message);
  if (e.code === 'LP_ERR_CONN_REFUSED' && http) {
    return new LivepatchError('LP_ERR_CONN_REFUSED', `${target} is not a livepatch agent (it answered HTTP ${http[1]}): ${AGENT_HINT}`);
  }
  if (
    e.code === 'LP_ERR_PROTO_BAD_MESSAGE' &&
    /not a livepatch agent|bad frame from agent|unexpected \w+ during the handshake/.test(e.message)
  ) {
    return new LivepatchError('LP_ERR_CONN_REFUSED', `${target} is not a livepatch agent (it did not greet like one): ${AGENT_HINT}`);
  }
  if (e.code === 'LP_ERR_CONN_REFUSED' && tls && /certificate|self.signed|unable to verify/i.test(e.message)) {
    return new LivepatchError(
      'LP_ERR_CONN_REFUSED',
      `${e.message}: the agent's certificate is not trusted; pass --ca FILE with its certificate or CA`,
    );
  }
  if (e.code === 'LP_ERR_CONN_REFUSED' && !tls && /socket hang up|ECONNRESET/.test(e.message)) {
    return new LivepatchError('LP_ERR_CONN_REFUSED', `${e.message} (if the agent serves TLS, add --tls)`);
  }
  return e;
}
