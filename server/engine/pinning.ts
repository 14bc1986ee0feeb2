/**
 * Pinning work to a generation and counting it in flight.
 *
 * Every incoming `node:http`/`node:https` request (the servers' `emit('request')` is wrapped once, on
 * the prototypes) counts as in flight for the current generation until its response closes (finished
 * or connection gone); `pin(fn)` does the same for other work until `fn` (or its promise) settles.
 * Only while several generations are live (or one is staged) does the work also run inside
 * `als.run(generation)`: in the steady state AsyncLocalStorage stays disabled and costs nothing, and
 * storeless work is attributed to the legacy generation when a patch begins (see docs/engine.md).
 * Requests can be held (queued, not dropped) while journal replay runs. When a request ends it is
 * counted in its generation's health (status class, latency, thrown or torn down: health.ts).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { nowUs, recordRequest } from './health';
import { state, type Generation } from './state';

/** What pinning needs from the engine. */
export interface PinHost {
  currentGen(): Generation;
  acquire(g: Generation): void;
  release(g: Generation): void;
}

const HOOKED = Symbol.for('livepatch.engine.httpHooked');

/** Run `fn` pinned to `g` (default: the current generation), counted in flight until it (or its promise) settles. */
export function pinWith<T>(host: PinHost, fn: () => T, g: Generation = host.currentGen()): T {
  host.acquire(g);
  let result: T;
  try {
    // While one generation is live, work needs no store: if a commit comes before it ends, work
    // without a store is attributed to this (then legacy) generation. So no AsyncLocalStorage here.
    result = state.multi || g !== host.currentGen() ? state.als.run(g, fn) : fn();
  } catch (e) {
    host.release(g);
    throw e;
  }
  if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
    Promise.resolve(result).then(
      () => host.release(g),
      () => host.release(g),
    );
  } else host.release(g);
  return result;
}

/** A server's `emit` (EventEmitter#emit on http.Server / https.Server). */
type Emit = (this: object, event: string | symbol, ...args: unknown[]) => boolean;

/** What `emit` is for a held request whose server's prototype was never wrapped (not expected). */
const noEmit: Emit = () => false;

/** Wraps server `emit` so each request is pinned; also owns the request hold queue. */
export class RequestPinning {
  private holds = 0;
  private queue: { server: object; req: unknown; res: unknown }[] = [];
  private readonly emits = new Map<object, Emit>();

  constructor(private readonly host: PinHost) {}

  /** Wrap `emit` on the http/https server prototypes (once per process). */
  install(): void {
    for (const proto of [http.Server.prototype, https.Server.prototype] as unknown as ({ emit: Emit } & Record<symbol, unknown>)[]) {
      if (proto[HOOKED]) continue;
      const original = proto.emit;
      this.emits.set(proto, original);
      const request = (server: object, req: unknown, res: unknown): boolean => {
        if (this.holds > 0) {
          this.queue.push({ server, req, res });
          return true;
        }
        return this.dispatch(original, server, req, res);
      };
      Object.defineProperty(proto, HOOKED, { value: true });
      // Servers emit 'request' with exactly (req, res): named parameters, no arguments copy or spread.
      proto.emit = function (this: object, event: string | symbol, req?: unknown, res?: unknown): boolean {
        // eslint-disable-next-line prefer-rest-params
        if (event !== 'request') return Reflect.apply(original, this, arguments) as boolean;
        return request(this, req, res);
      };
    }
  }

  private dispatch(original: Emit, server: object, req: unknown, res: unknown): boolean {
    const host = this.host;
    const g = host.currentGen();
    const response = res as http.ServerResponse | undefined;
    host.acquire(g);
    let done = false;
    const t0 = nowUs();
    const release = (threw?: boolean): void => {
      if (done) return;
      done = true;
      // The generation's health (health.ts): read at the end, a released generation has none.
      const h = g.health;
      if (h !== undefined && response !== undefined) recordRequest(h, response, t0, threw === true);
      host.release(g);
    };
    // 'close' is emitted once the response has finished or its connection was torn down: one
    // listener covers both. `on`, not `once`: `release` runs once by itself (`done`), and `once`
    // would allocate a wrapper per request.
    if (response && typeof response.on === 'function') response.on('close', release as () => void);
    else release();
    try {
      if (!state.multi) return original.call(server, 'request', req, res);
      return state.als.run(g, () => original.call(server, 'request', req, res));
    } catch (e) {
      // The app's own handler threw synchronously: same as without us (EventEmitter rethrows).
      release(true);
      throw e;
    }
  }

  /** Queue incoming requests until `until` settles or `maxMs` passes. */
  hold(until: Promise<unknown>, maxMs = 30_000): void {
    this.holds++;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      this.holds--;
      if (this.holds === 0) this.flush();
    };
    const timer = setTimeout(end, maxMs);
    timer.unref?.();
    Promise.resolve(until).then(end, end);
  }

  private flush(): void {
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) {
      const original = this.emits.get(Object.getPrototypeOf(q.server) as object) ?? this.findOriginal(q.server);
      try {
        this.dispatch(original, q.server, q.req, q.res);
      } catch (e) {
        process.emitWarning(`livepatch: a held request's handler threw: ${(e as Error)?.message ?? e}`);
      }
    }
  }

  private findOriginal(server: object): Emit {
    for (let p = Object.getPrototypeOf(server) as object | null; p; p = Object.getPrototypeOf(p) as object | null) {
      const o = this.emits.get(p);
      if (o) return o;
    }
    return noEmit;
  }
}
