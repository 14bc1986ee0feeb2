/**
 * Small HTTP helpers shared by the handlers: JSON replies, client errors, and parsing the
 * `items=sku:qty,sku:qty` query form used by the quote endpoint.
 */
import type { ServerResponse } from 'node:http';
import type { OrderLine } from './pricing';

/** An error whose message is safe to show the client, with its HTTP status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Send a JSON body with a status. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Parse `mug:12,tee:1` into order lines; throws HttpError 400 on anything else. */
export function parseItems(text: string | null): OrderLine[] {
  if (!text) throw new HttpError(400, 'items is required, e.g. items=mug:2,tee:1');
  if (text.length > 2000) throw new HttpError(400, 'items is too long');
  return text.split(',').map((part) => {
    const m = /^([a-z0-9-]{1,40}):(\d{1,4})$/.exec(part.trim());
    if (!m) throw new HttpError(400, `bad item "${part}": use sku:qty`);
    return { sku: m[1]!, qty: Number(m[2]) };
  });
}

/** A positive integer query parameter, or the default. */
export function intParam(url: URL, name: string, dflt: number): number {
  const v = url.searchParams.get(name);
  if (v === null) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new HttpError(400, `${name} must be an integer 1..10000`);
  return n;
}
