/**
 * Facade classes for exported classes.
 *
 * `new F(...)` constructs an instance of the caller's generation's class with `new.target` kept, so
 * every instance has `F.prototype` in its chain: `instanceof F` holds across generations and methods
 * of existing instances (trampolines on `F.prototype`) run the caller's generation's implementation on
 * the same object, so long-lived objects pick up fixes and keep their state. Each generation's class
 * gets a `Symbol.hasInstance` that also accepts facade instances, so `x instanceof Local` inside module
 * code still holds. Limitation: `#private` fields are per class version and do not cross versions.
 */

const fnHasInstance = Function.prototype[Symbol.hasInstance];
const SKIP_STATIC = new Set<string | symbol>(['length', 'name', 'prototype', Symbol.hasInstance]);
/** Facade class → the member names it already trampolines (prototype and static). */
const members = new WeakMap<Function, { proto: Set<string | symbol>; statics: Set<string | symbol>; get: () => any }>();

function protoTrampoline(F: Function, get: () => any, key: string | symbol, d: PropertyDescriptor): PropertyDescriptor {
  if (typeof d.value === 'function') {
    const t = function (this: unknown): unknown {
      // eslint-disable-next-line prefer-rest-params
      return get().prototype[key].apply(this, arguments);
    };
    Object.defineProperty(t, 'name', { value: d.value.name, configurable: true });
    return { value: t, writable: true, enumerable: d.enumerable, configurable: true };
  }
  // Accessors and plain prototype values: look up the generation's descriptor on each access.
  const find = (): PropertyDescriptor | undefined => {
    for (let p = get().prototype; p && p !== F.prototype; p = Object.getPrototypeOf(p)) {
      const x = Object.getOwnPropertyDescriptor(p, key);
      if (x) return x;
    }
    return undefined;
  };
  return {
    enumerable: d.enumerable,
    configurable: true,
    get(this: unknown) {
      const x = find();
      return x?.get ? x.get.call(this) : x?.value;
    },
    set(this: unknown, v: unknown) {
      const x = find();
      if (x?.set) x.set.call(this, v);
      else Object.defineProperty(this, key, { value: v, writable: true, enumerable: true, configurable: true });
    },
  };
}

function staticTrampoline(get: () => any, key: string | symbol, d: PropertyDescriptor): PropertyDescriptor {
  if (typeof d.value === 'function' && d.get === undefined) {
    const t = function (this: unknown): unknown {
      // eslint-disable-next-line prefer-rest-params
      return get()[key].apply(this, arguments);
    };
    Object.defineProperty(t, 'name', { value: d.value.name, configurable: true });
    return { value: t, writable: true, enumerable: d.enumerable, configurable: true };
  }
  return {
    enumerable: d.enumerable,
    configurable: true,
    get: () => get()[key],
    set: (v: unknown) => {
      get()[key] = v;
    },
  };
}

/** Let `x instanceof C` (C a generation's class) accept instances built through facade `F`. */
function linkHasInstance(C: Function, F: Function): void {
  if (Object.prototype.hasOwnProperty.call(C, Symbol.hasInstance)) return;
  Object.defineProperty(C, Symbol.hasInstance, {
    configurable: true,
    value(this: Function, x: unknown): boolean {
      return fnHasInstance.call(this, x) || (this === C && fnHasInstance.call(F, x));
    },
  });
}

/** Bring facade `F` in step with generation class `C`: new members, prototype chain, instanceof link. */
export function syncClassFacade(F: Function, C: unknown): void {
  const m = members.get(F);
  if (!m || typeof C !== 'function') return;
  linkHasInstance(C, F);
  const base = Object.getPrototypeOf(C.prototype);
  if (Object.getPrototypeOf(F.prototype) !== base) Object.setPrototypeOf(F.prototype, base);
  if (Object.getPrototypeOf(F) !== Object.getPrototypeOf(C)) Object.setPrototypeOf(F, Object.getPrototypeOf(C));
  for (const key of Reflect.ownKeys(C.prototype)) {
    if (key === 'constructor' || m.proto.has(key)) continue;
    m.proto.add(key);
    Object.defineProperty(F.prototype, key, protoTrampoline(F, m.get, key, Object.getOwnPropertyDescriptor(C.prototype, key)!));
  }
  for (const key of Reflect.ownKeys(C)) {
    if (SKIP_STATIC.has(key) || m.statics.has(key)) continue;
    m.statics.add(key);
    Object.defineProperty(F, key, staticTrampoline(m.get, key, Object.getOwnPropertyDescriptor(C, key)!));
  }
}

/** A facade class dispatching to `get()` (the caller's generation's class), shaped after `C`. */
export function makeClassFacade(get: () => any, C: Function): Function {
  const F = class {
    constructor(...args: unknown[]) {
      return Reflect.construct(get(), args, new.target);
    }
  };
  Object.defineProperty(F, 'name', { value: C.name, configurable: true });
  Object.defineProperty(F, Symbol.hasInstance, {
    configurable: true,
    value(this: Function, x: unknown): boolean {
      // Instances built inside module code with the local class (not via the facade) count too.
      return fnHasInstance.call(this, x) || (this === F && fnHasInstance.call(get(), x));
    },
  });
  members.set(F, { proto: new Set(), statics: new Set(), get });
  syncClassFacade(F, C);
  return F;
}
