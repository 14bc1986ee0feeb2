/**
 * Graceful stop of a cluster worker for a rolling restart. At start the worker notes every HTTP
 * server the app creates (listen is wrapped once; nothing is added per request). On `drain`, each
 * response still to be written — the ones in flight and those that arrive on
 * already-open keep-alive connections — goes out with `Connection: close`, so connections end between
 * requests and a client never writes onto a socket the server is closing. The primary then
 * disconnects the worker (which stops it accepting); once its connections are gone the process exits,
 * and at the deadline whatever is left is closed.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';

const servers = new Set<http.Server>();
let tracking = false;
let draining = false;

/** Record the app's HTTP servers from now on (the preload calls this before the app's code runs). */
export function trackServers(): void {
  if (tracking) return;
  tracking = true;
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
    if (this instanceof http.Server || this instanceof https.Server) servers.add(this as http.Server);
    return (listen as (...a: unknown[]) => net.Server).apply(this, args);
  } as typeof listen;
}

/**
 * Start draining: responses end their connections; at `deadlineMs` every remaining connection is
 * closed and the process exits. Returns the number of servers being drained.
 */
export function drain(deadlineMs: number): number {
  if (draining) return servers.size;
  draining = true;
  // Every response not yet started, in flight or still to come, is the last on its connection
  // (`_implicitHeader` goes through writeHead too). The worker is leaving: a process-wide change is fine.
  const writeHead = http.ServerResponse.prototype.writeHead;
  http.ServerResponse.prototype.writeHead = function (this: http.ServerResponse, ...args: unknown[]) {
    this.shouldKeepAlive = false;
    return (writeHead as (...a: unknown[]) => http.ServerResponse).apply(this, args);
  } as typeof writeHead;
  for (const server of servers) {
    // Keep-alive connections with no request in flight: the next request on each gets `Connection: close`.
    // Node's own idle-connection sweep on close would cut them under a client that may be writing.
    server.closeIdleConnections = () => undefined;
  }
  const timer = setTimeout(() => {
    for (const server of servers) server.closeAllConnections?.();
    process.exit(0);
  }, deadlineMs);
  // The deadline must not by itself keep a worker alive whose connections are all gone.
  timer.unref();
  return servers.size;
}
