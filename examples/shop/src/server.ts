/**
 * The HTTP server: parse the URL, route, run the handler, reply JSON. Handler failures become JSON
 * errors (HttpError keeps its status and message; anything else is a 500 without details).
 */
import * as http from 'node:http';
import { HttpError, sendJson } from './http';
import { match } from './router';

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://shop.local');
  } catch {
    return sendJson(res, 400, { error: 'bad url' });
  }
  const m = match(req.method ?? 'GET', url.pathname);
  if (m === undefined) return sendJson(res, 404, { error: 'not found' });
  if (m === 'method') return sendJson(res, 405, { error: 'method not allowed' });
  try {
    sendJson(res, 200, await m.handler(url, m.params));
  } catch (e) {
    if (e instanceof HttpError) return sendJson(res, e.status, { error: e.message });
    console.error('shop: handler failed:', e instanceof Error ? e.message : e);
    sendJson(res, 500, { error: 'internal error' });
  }
}

/** Start listening on 127.0.0.1:`port` (0 = any free port). */
export function startServer(port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    // Request bodies are not used; drain them so keep-alive connections stay usable.
    req.resume();
    void handle(req, res);
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
