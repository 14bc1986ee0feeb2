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
import { recordRequest, startRequest } from './health';
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

/** A server's `emit` (EventEmitter#emit on http.Server / https.Server), or a response's. */
type Emit = (this: object, event: string | symbol, ...args: unknown[]) => boolean;

/** What `emit` is for a held request whose server's prototype was never wrapped (not expected). */
const noEmit: Emit = () => false;

/** Emit 'request' on `server`, inside AsyncLocalStorage only while several generations are live. */
function emitIn(g: Generation, original: Emit, server: object, req: unknown, res: unknown): boolean {
  if (!state.multi) return original.call(server, 'request', req, res);
  return state.als.run(g, () => original.call(server, 'request', req, res));
}

/** On a response being counted: its generation, and its start time (health.ts `startRequest`). */
const kGen = Symbol('livepatch.generation');
const kStart = Symbol('livepatch.start');
/** A response with livepatch's two fields (set on the instance when its request is dispatched). */
interface Counted {
  [kGen]?: Generation | undefined;
  [kStart]?: number;
}

/**
 * Wraps server `emit` so each request is pinned, and response `emit` to see each response's 'close';
 * also owns the request hold queue.
 *
 * Per request, in the steady state: one current-generation read, two fields set on the response, a
 * clock read, and at 'close' a clock read and a few counter increments (above ~1000 requests a
 * second, only some requests are timed: health.ts). No closure, listener or other object is
 * allocated per request: the response's 'close' (emitted once the response has finished or its
 * connection was torn down) is seen by the wrapped `ServerResponse.prototype.emit`, after the app's
 * own 'close' listeners have run.
 */
export class RequestPinning {
  private holds = 0;
  private queue: { server: object; req: unknown; res: unknown }[] = [];
  private readonly emits = new Map<object, Emit>();
  /** The wrapped ServerResponse#emit: a response that inherits it needs no listener of its own. */
  private responseEmit: Emit | undefined;

  constructor(private readonly host: PinHost) {}

  /** Wrap `emit` on the http/https server prototypes and on ServerResponse's (once per process). */
  install(): void {
    this.installResponseHook();
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

  private installResponseHook(): void {
    const proto = http.ServerResponse.prototype as unknown as { emit: Emit } & Record<symbol, unknown>;
    if (proto[HOOKED]) {
      this.responseEmit = proto[HOOKED] as Emit;
      return;
    }
    const original = proto.emit;
    const end = (res: Counted & http.ServerResponse): void => this.end(res, false);
    // Responses emit 'prefinish', 'finish' and 'close' with no arguments: only 'close' does more than
    // one comparison here, and it counts the response after the app's own listeners have run.
    const emit = function (this: Counted & http.ServerResponse, event: string | symbol): boolean {
      // eslint-disable-next-line prefer-rest-params
      if (arguments.length > 1) return Reflect.apply(original, this, arguments) as boolean;
      if (event !== 'close' || this[kGen] === undefined) return original.call(this, event);
      try {
        return original.call(this, event);
      } finally {
        end(this);
      }
    } as Emit;
    Object.defineProperty(proto, HOOKED, { value: emit });
    proto.emit = emit;
    this.responseEmit = emit;
  }

  private dispatch(original: Emit, server: object, req: unknown, res: unknown): boolean {
    const response = res as (Counted & http.ServerResponse) | undefined;
    const counted = response?.[kGen];
    // The same response emitted again (a server handing its request to another server's listeners):
    // it is already in flight for its generation and is counted once, at its 'close'.
    if (counted !== undefined) return emitIn(counted, original, server, req, res);
    const g = this.host.currentGen();
    this.host.acquire(g);
    if (response && typeof response.on === 'function') {
      response[kGen] = g;
      response[kStart] = startRequest();
      // A response class with its own `emit` may not reach the wrapped one: one listener sees its
      // 'close' (`end` counts a response once, whichever sees it first).
      if (response.emit !== this.responseEmit) response.on('close', () => this.end(response, false));
    } else this.count(g, undefined, 0, false);
    try {
      return emitIn(g, original, server, req, res);
    } catch (e) {
      // The app's own handler threw synchronously: same as without us (EventEmitter rethrows).
      if (response) this.end(response, true);
      throw e;
    }
  }

  /** A counted response ended (closed, or its handler threw): count it once, in its generation. */
  private end(res: Counted & http.ServerResponse, threw: boolean): void {
    const g = res[kGen];
    if (g === undefined) return;
    res[kGen] = undefined;
    this.count(g, res, res[kStart] ?? 0, threw);
  }

  private count(g: Generation, res: http.ServerResponse | undefined, t0: number, threw: boolean): void {
    // The generation's health (health.ts): read at the end, a released generation has none.
    const h = g.health;
    if (h !== undefined && res !== undefined) recordRequest(h, res, t0, threw);
    this.host.release(g);
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
