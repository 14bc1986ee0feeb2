/**
 * Facade classes for exported classes.
 *
 * `new F(...)` constructs an instance of the caller's generation's class with `new.target` kept, so
 * the instance has `F.prototype` in its chain. Every generation's class is rewritten too: its own
 * prototype members move to a private table and the prototype gets the same trampolines as
 * `F.prototype`. So an instance built through the facade *or* with the local class inside module code
 * (factories, statics) runs the caller's generation's methods on the same object: long-lived objects
 * pick up fixes and keep their state. `super` calls keep working (home objects are untouched).
 * `instanceof F` and `instanceof Local` accept instances of any generation of the class.
 * Limitation: `#private` fields are per class version and do not cross versions.
 */

const fnHasInstance = Function.prototype[Symbol.hasInstance];
const SKIP_STATIC = new Set<string | symbol>(['length', 'name', 'prototype', Symbol.hasInstance]);
/** A generation class's original prototype members. */
const IMPL = Symbol('livepatch.classImpl');

interface FacadeInfo {
  /** The caller's generation's class. */
  get: () => any;
  /** Prototype member trampolines, shared by F.prototype and every generation's prototype. */
  tramps: Map<string | symbol, PropertyDescriptor>;
  statics: Set<string | symbol>;
  /** Prototypes of every generation's class (for instanceof). */
  protos: WeakSet<object>;
}
const infos = new WeakMap<Function, FacadeInfo>();
/** Resets of the method trampolines' one-entry caches (facades live as long as the process). */
const cacheResets: (() => void)[] = [];

/** Forget cached classes so a released generation's classes are not kept alive by a cache. */
export function clearMethodCaches(): void {
  for (const reset of cacheResets) reset();
}

function implDescriptor(C: any, key: string | symbol): PropertyDescriptor | undefined {
  const own: PropertyDescriptor | undefined = C?.[IMPL]?.[key];
  if (own) return own;
  // Not defined by this version itself: inherited from its base class.
  for (let p = C && Object.getPrototypeOf(C.prototype); p; p = Object.getPrototypeOf(p)) {
    const d = Object.getOwnPropertyDescriptor(p, key);
    if (d) return d;
  }
  return undefined;
}

function trampoline(info: FacadeInfo, key: string | symbol, d: PropertyDescriptor): PropertyDescriptor {
  let t = info.tramps.get(key);
  if (t) return t;
  if (typeof d.value === 'function') {
    // One-entry cache: while the resolved class stays the same (one generation live) a call costs a
    // compare; the table lookup only happens when the caller's generation's class changes.
    let cachedClass: unknown;
    let cachedImpl: Function | undefined;
    const f = function (this: unknown): unknown {
      const C = info.get();
      if (C !== cachedClass) {
        cachedImpl = implDescriptor(C, key)?.value;
        cachedClass = C;
      }
      // eslint-disable-next-line prefer-rest-params
      return cachedImpl!.apply(this, arguments);
    };
    cacheResets.push(() => {
      cachedClass = undefined;
      cachedImpl = undefined;
    });
    Object.defineProperty(f, 'name', { value: d.value.name, configurable: true });
    t = { value: f, writable: true, enumerable: d.enumerable, configurable: true };
  } else {
    t = {
      enumerable: d.enumerable,
      configurable: true,
      get(this: unknown) {
        const x = implDescriptor(info.get(), key);
        return x?.get ? x.get.call(this) : x?.value;
      },
      set(this: unknown, v: unknown) {
        const x = implDescriptor(info.get(), key);
        if (x?.set) x.set.call(this, v);
        else Object.defineProperty(this, key, { value: v, writable: true, enumerable: true, configurable: true });
      },
    };
  }
  info.tramps.set(key, t);
  return t;
}

function staticTrampoline(get: () => any, key: string | symbol, d: PropertyDescriptor): PropertyDescriptor {
  if (typeof d.value === 'function') {
    const t = function (this: unknown): unknown {
      // eslint-disable-next-line prefer-rest-params
      return get()[key].apply(this, arguments);
    };
    Object.defineProperty(t, 'name', { value: d.value.name, configurable: true });
    return { value: t, writable: true, enumerable: d.enumerable, configurable: true };
  }
  return { enumerable: d.enumerable, configurable: true, get: () => get()[key], set: (v: unknown) => void (get()[key] = v) };
}

/** Move C's own prototype members aside and put the shared trampolines in their place. */
function rewriteClass(C: any, F: Function, info: FacadeInfo): void {
  if (Object.prototype.hasOwnProperty.call(C, IMPL)) return;
  const impl: Record<string | symbol, PropertyDescriptor> = Object.create(null);
  for (const key of Reflect.ownKeys(C.prototype)) {
    if (key === 'constructor') continue;
    const d = Object.getOwnPropertyDescriptor(C.prototype, key)!;
    impl[key] = d;
    const t = trampoline(info, key, d);
    if (d.configurable) Object.defineProperty(C.prototype, key, t);
    if (!Object.prototype.hasOwnProperty.call(F.prototype, key)) Object.defineProperty(F.prototype, key, t);
  }
  Object.defineProperty(C, IMPL, { value: impl });
  info.protos.add(C.prototype);
  if (!Object.prototype.hasOwnProperty.call(C, Symbol.hasInstance)) {
    Object.defineProperty(C, Symbol.hasInstance, {
      configurable: true,
      value(this: Function, x: unknown): boolean {
        return fnHasInstance.call(this, x) || (this === C && (F as any)[Symbol.hasInstance](x));
      },
    });
  }
}

/** Bring facade `F` in step with generation class `C`: rewrite C, new members, prototype chain. */
export function syncClassFacade(F: Function, C: unknown): void {
  const info = infos.get(F);
  if (!info || typeof C !== 'function') return;
  rewriteClass(C, F, info);
  const base = Object.getPrototypeOf(C.prototype);
  if (Object.getPrototypeOf(F.prototype) !== base) Object.setPrototypeOf(F.prototype, base);
  if (Object.getPrototypeOf(F) !== Object.getPrototypeOf(C)) Object.setPrototypeOf(F, Object.getPrototypeOf(C));
  for (const key of Reflect.ownKeys(C)) {
    if (SKIP_STATIC.has(key) || info.statics.has(key) || typeof key === 'symbol') continue;
    info.statics.add(key);
    Object.defineProperty(F, key, staticTrampoline(info.get, key, Object.getOwnPropertyDescriptor(C, key)!));
  }
}

/** A facade class dispatching to `get()` (the caller's generation's class), shaped after `C`. */
export function makeClassFacade(get: () => any, C: Function): Function {
  const F = class {
    constructor(...args: unknown[]) {
      return Reflect.construct(get(), args, new.target);
    }
  };
  const info: FacadeInfo = { get, tramps: new Map(), statics: new Set(), protos: new WeakSet() };
  Object.defineProperty(F, 'name', { value: C.name, configurable: true });
  Object.defineProperty(F, Symbol.hasInstance, {
    configurable: true,
    value(this: Function, x: unknown): boolean {
      if (fnHasInstance.call(this, x)) return true;
      if (this !== F || x === null || (typeof x !== 'object' && typeof x !== 'function')) return false;
      // Instances built with a generation's local class inside module code count too.
      for (let p = Object.getPrototypeOf(x); p; p = Object.getPrototypeOf(p)) if (info.protos.has(p)) return true;
      return false;
    },
  });
  infos.set(F, info);
  syncClassFacade(F, C);
  return F;
}
