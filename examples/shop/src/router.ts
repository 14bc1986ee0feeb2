/**
 * Routing: method + path pattern → handler. The table is built once at start-up and holds plain
 * function references, the way most routers do; livepatch's trampolines make patched handlers
 * reachable through them anyway.
 */
import * as routes from './routes';
import type { Handler, Params } from './routes';

interface Route {
  method: string;
  parts: string[];
  handler: Handler;
}

function route(method: string, pattern: string, handler: Handler): Route {
  return { method, parts: pattern.split('/').filter(Boolean), handler };
}

const TABLE: readonly Route[] = [
  route('GET', '/health', routes.health),
  route('GET', '/products', routes.products),
  route('GET', '/stock', routes.stock),
  route('GET', '/quote', routes.quoteItems),
  route('POST', '/carts', routes.createCart),
  route('GET', '/carts/:id', routes.showCart),
  route('POST', '/carts/:id/items', routes.addItem),
  route('POST', '/carts/:id/checkout', routes.checkoutCart),
  route('GET', '/orders', routes.orders),
];

export interface Match {
  handler: Handler;
  params: Params;
}

/** The handler for a request, `'method'` when the path exists under another method, or undefined. */
export function match(method: string, pathname: string): Match | 'method' | undefined {
  const parts = pathname.split('/').filter(Boolean);
  let pathMatched = false;
  for (const r of TABLE) {
    if (r.parts.length !== parts.length) continue;
    const params: Params = {};
    const ok = r.parts.every((p, i) => {
      if (p.startsWith(':')) {
        params[p.slice(1)] = decodeURIComponent(parts[i]!);
        return true;
      }
      return p === parts[i];
    });
    if (!ok) continue;
    if (r.method === method) return { handler: r.handler, params };
    pathMatched = true;
  }
  return pathMatched ? 'method' : undefined;
}
