/**
 * Effects of staged code: what a new module version's top level (and a verify hook) starts while it is
 * being staged, recorded so that none of it outlives a stage that is rejected, discarded or a dry run.
 *
 * While any stage exists, timers (`setTimeout`/`setInterval`/`setImmediate`, global and `node:timers`),
 * `process` listeners and `net.Server#listen` are wrapped; a call made by staged work (its
 * AsyncLocalStorage store is a staged generation) is recorded in that stage's log. `process.exit()`,
 * `process.abort()` and `process.kill(process.pid)` called by staged work throw instead of ending
 * the host. Changes to `globalThis` are found by comparing its properties around each module's
 * synchronous evaluation. `undo()` clears the timers, removes the listeners, closes the servers and
 * restores the globals. Work that is not staged calls straight through to Node's functions, and the
 * wrappers are removed when the last stage ends, so the app sees Node's own functions in between.
 */
import * as net from 'node:net';
import timers = require('node:timers');
import { LivepatchError } from '../../shared/errors';
import { state, type Generation } from './state';
import type { AppFunction } from './types';

/** One thing staged code started. */
export interface Effect {
  readonly what: string;
  /** Module whose top level was running, if it was synchronous top-level code. */
  readonly module?: string;
  readonly undo: () => void;
  /** Whether it still outlives the code that started it (a one-shot timer that fired does not). */
  readonly active: () => boolean;
}

export class EffectLog {
  readonly effects: Effect[] = [];
  /** True from the end of a stage's top-level evaluation: recorded effects are no longer refused. */
  quiet = false;
  add(what: string, undo: () => void, active: () => boolean = () => true): void {
    const top = state.evalStack[state.evalStack.length - 1];
    this.effects.push({ what, undo, active, ...(top ? { module: top.id } : {}) });
  }
  /** Effects still active (refused when a version's loading left them behind). */
  lasting(): Effect[] {
    return this.effects.filter((e) => e.active());
  }
  /** Undo everything recorded so far (each undo contained: one failing does not stop the others). */
  undo(): void {
    for (const e of this.effects.splice(0).reverse()) {
      try {
        e.undo();
      } catch {
        // A server already closed, a timer already fired: nothing left to undo.
      }
    }
  }
}

const logs = new WeakMap<Generation, EffectLog>();
let active = 0;
const restores: (() => void)[] = [];

/** The log of the staged generation the running work belongs to, if any. */
function current(): EffectLog | undefined {
  if (active === 0 || !state.multi) return undefined;
  const g = state.als.getStore();
  return g === undefined ? undefined : logs.get(g);
}

function wrapOn(owner: object, name: string, make: (orig: AppFunction) => AppFunction): void {
  const obj = owner as Record<string, unknown>;
  const own = Object.getOwnPropertyDescriptor(obj, name);
  const orig = obj[name] as AppFunction;
  const w = make(orig);
  Object.defineProperty(w, 'name', { value: orig.name, configurable: true });
  Object.defineProperty(w, 'length', { value: orig.length, configurable: true });
  obj[name] = w;
  restores.push(() => {
    if (own) Object.defineProperty(obj, name, own);
    else delete obj[name];
  });
}

function install(): void {
  const [ct, ci, cim] = [clearTimeout, clearInterval, clearImmediate];
  const clear: Record<string, (t: unknown) => void> = {
    setTimeout: (t) => ct(t as NodeJS.Timeout),
    setInterval: (t) => ci(t as NodeJS.Timeout),
    setImmediate: (t) => cim(t as NodeJS.Immediate),
  };
  for (const target of [globalThis, timers]) {
    for (const name of ['setTimeout', 'setInterval', 'setImmediate']) {
      wrapOn(
        target,
        name,
        (orig) =>
          function (this: unknown, ...args: unknown[]): unknown {
            const log = current();
            if (!log) return orig.apply(this, args) as unknown;
            // One-shot timers are marked when they fire: a timer that already ran left nothing behind.
            let fired = false;
            const cb = args[0];
            if (name !== 'setInterval' && typeof cb === 'function') {
              args[0] = function (this: unknown, ...a: unknown[]): unknown {
                fired = true;
                return cb.apply(this, a) as unknown;
              };
            }
            const t = orig.apply(this, args) as unknown;
            log.add(
              `${name}()`,
              () => clear[name]!(t),
              () => !fired,
            );
            return t;
          },
      );
    }
  }
  for (const name of ['on', 'addListener', 'once', 'prependListener', 'prependOnceListener']) {
    wrapOn(
      process,
      name,
      (orig) =>
        function (this: NodeJS.Process, event: string | symbol, listener: (...a: unknown[]) => void): unknown {
          // eslint-disable-next-line prefer-rest-params
          const r = orig.apply(this, arguments) as unknown;
          current()?.add(`process.${name}(${JSON.stringify(String(event))})`, () => process.removeListener(event, listener));
          return r;
        },
    );
  }
  for (const name of ['exit', 'abort', 'reallyExit']) {
    wrapOn(
      process,
      name,
      (orig) =>
        function (this: unknown): unknown {
          const log = current();
          if (log) {
            log.add(`process.${name}()`, () => undefined);
            throw new LivepatchError('LP_ERR_PATCH_EFFECT', `staged code called process.${name}(); the host keeps running`);
          }
          // eslint-disable-next-line prefer-rest-params
          return orig.apply(this, arguments) as unknown;
        },
    );
  }
  wrapOn(
    process,
    'kill',
    (orig) =>
      function (this: unknown, pid: number): unknown {
        const log = current();
        if (log && Number(pid) === process.pid) {
          log.add('process.kill(process.pid)', () => undefined);
          throw new LivepatchError('LP_ERR_PATCH_EFFECT', 'staged code tried to kill its own process; the host keeps running');
        }
        // eslint-disable-next-line prefer-rest-params
        return orig.apply(this, arguments) as unknown;
      },
  );
  wrapOn(
    net.Server.prototype,
    'listen',
    (orig) =>
      function (this: net.Server): unknown {
        // eslint-disable-next-line prefer-rest-params
        const r = orig.apply(this, arguments) as unknown;
        current()?.add(
          'listen()',
          () => this.close(),
          () => this.listening,
        );
        return r;
      },
  );
}

function uninstall(): void {
  for (const r of restores.splice(0).reverse()) r();
}

/** Start recording effects of work pinned to staged generation `g`. */
export function beginEffects(g: Generation): EffectLog {
  const log = new EffectLog();
  logs.set(g, log);
  if (active++ === 0) install();
  return log;
}

/** Stop recording for `g` (its effects stay recorded in the log). */
export function endEffects(g: Generation): void {
  if (!logs.delete(g)) return;
  if (--active === 0) uninstall();
}

/** Own properties of globalThis, to find what a module's top level replaced or added. */
export function snapshotGlobals(): Map<string | symbol, PropertyDescriptor> {
  const out = new Map<string | symbol, PropertyDescriptor>();
  for (const k of Reflect.ownKeys(globalThis)) {
    const d = Object.getOwnPropertyDescriptor(globalThis, k);
    if (d) out.set(k, d);
  }
  return out;
}

const sameDescriptor = (a: PropertyDescriptor, b: PropertyDescriptor): boolean =>
  Object.is(a.value, b.value) &&
  a.get === b.get &&
  a.set === b.set &&
  a.writable === b.writable &&
  a.enumerable === b.enumerable &&
  a.configurable === b.configurable;

/** Record the global changes since `before` in `log`, each undone by restoring what was there. */
export function recordGlobalChanges(log: EffectLog, before: Map<string | symbol, PropertyDescriptor>): void {
  const g = globalThis as Record<string, unknown>;
  // String-keyed globals only: Node itself adds symbol-keyed ones lazily (e.g. undici's dispatcher on 22+).
  for (const k of Object.getOwnPropertyNames(g)) {
    const now = Object.getOwnPropertyDescriptor(g, k)!;
    const was = before.get(k);
    if (was && sameDescriptor(was, now)) continue;
    log.add(`globalThis.${String(k)} ${was ? 'replaced' : 'added'}`, () => {
      if (was) Object.defineProperty(g, k, was);
      else delete g[k];
    });
  }
  for (const [k, was] of before) {
    if (typeof k === 'symbol' || Object.getOwnPropertyDescriptor(g, k)) continue;
    log.add(`globalThis.${String(k)} deleted`, () => Object.defineProperty(g, k, was));
  }
}
