/**
 * The canonical exports: the object every importer of a live module holds is the one the module
 * itself made when it was deployed, never a wrapper. Functions and classes on it reach new versions
 * by dispatching in place (dispatch.ts). What dispatch cannot cover is planned at stage and applied
 * in the commit step:
 * - an exported *value* that a new version changes (or a name it adds) becomes an accessor on the
 *   canonical object reading the caller's generation's value;
 * - a class of a new version joins its canonical class's `instanceof` family (either class accepts
 *   instances of both), and methods the new version adds are stubbed onto the canonical class so
 *   instances made before the patch have them.
 * Reading exports never calls a getter: descriptors only.
 */
import { LivepatchError } from '../../shared/errors';
import { registered, type VersionCtl } from './dispatch';
import { resolveExports, type ExportKind, type LiveModule } from './state';
import type { AppFunction } from './types';

const fnToString = Function.prototype.toString;
const fnHasInstance = Function.prototype[Symbol.hasInstance];
const SKIP = new Set(['__esModule', 'length', 'name', 'prototype', 'caller', 'arguments']);

/** Kind of one exported value. Native classes are 'class'; ES5-style constructors stay 'function'. */
export function kindOf(v: unknown): ExportKind {
  if (typeof v !== 'function') return 'value';
  try {
    return /^class\b/.test(fnToString.call(v)) ? 'class' : 'function';
  } catch {
    return 'function';
  }
}

/** Shape of `module.exports` itself. */
export function shapeOf(e: unknown): LiveModule['shape'] {
  if (typeof e === 'function') return kindOf(e) === 'class' ? 'class' : 'function';
  return e !== null && typeof e === 'object' ? 'object' : 'other';
}

/** Export names → kinds (own enumerable string keys; accessors count as values, never called). */
export function exportKinds(e: unknown): Map<string, ExportKind> {
  const out = new Map<string, ExportKind>();
  if (e === null || (typeof e !== 'object' && typeof e !== 'function')) return out;
  for (const name of Object.keys(e)) {
    if (typeof e === 'function' && SKIP.has(name)) continue;
    const d = Object.getOwnPropertyDescriptor(e, name);
    out.set(name, d && 'value' in d ? kindOf(d.value) : 'value');
  }
  return out;
}

/** What a commit does to the canonical exports of one module. */
export interface CanonPlan {
  /** Names that become (or are added as) per-generation accessors. */
  readonly perGen: string[];
}

const slotOf = (v: unknown): number | undefined =>
  v !== null && (typeof v === 'object' || typeof v === 'function') ? registered.get(v) : undefined;

/** Whether the canonical object's names are the module's to keep in step (not a framework's object). */
function ownsNames(canon: unknown): boolean {
  if (typeof canon === 'function') return slotOf(canon) !== undefined;
  if (canon === null || typeof canon !== 'object') return false;
  const p = Object.getPrototypeOf(canon) as object | null;
  return p === Object.prototype || p === null;
}

function sameDispatch(a: PropertyDescriptor, b: PropertyDescriptor): boolean {
  if ('value' in a && 'value' in b) {
    if (Object.is(a.value, b.value)) return true;
    const s = slotOf(a.value);
    return s !== undefined && s === slotOf(b.value);
  }
  if (a.get && b.get) return slotOf(a.get) !== undefined && slotOf(a.get) === slotOf(b.get) && slotOf(a.set) === slotOf(b.set);
  return false;
}

function kindError(mod: LiveModule, name: string, was: string, now: string): LivepatchError {
  const message = `${mod.id}: export "${name}" changed from ${was} to ${now}`;
  return new LivepatchError('LP_ERR_PATCH_EXPORT_KIND', message, { module: mod.id, export: name, message });
}

/**
 * An ES module's namespace cannot change: importers keep the deployed bindings, and only functions
 * and classes reach new code (by dispatch). Changed exported values are refused statically (reach.ts);
 * here a function that became something else is refused.
 */
function planEsm(mod: LiveModule, next: unknown): CanonPlan {
  const ns = mod.canon as Record<string, unknown>;
  for (const name of Object.keys(ns)) {
    const was = ns[name];
    if (slotOf(was) === undefined) continue;
    const d = next !== null && typeof next === 'object' ? Object.getOwnPropertyDescriptor(next, name) : undefined;
    // The version's exports object is its own (esm.ts): reading its getters runs no app code.
    const now: unknown = d === undefined ? undefined : 'value' in d ? d.value : d.get?.call(next);
    if (now !== undefined && typeof now !== 'function') throw kindError(mod, name, kindOf(was), kindOf(now));
  }
  return { perGen: [] };
}

/** Plan the commit's changes to `mod`'s canonical exports for new exports `next`; throws LP_ERR_PATCH_EXPORT_KIND. */
export function planCanon(mod: LiveModule, next: unknown): CanonPlan {
  if (mod.esm) return planEsm(mod, next);
  const canon = mod.canon;
  const shape = shapeOf(next);
  if (shape !== mod.shape) throw kindError(mod, 'module.exports', mod.shape, shape);
  if (mod.shape === 'other') {
    if (!Object.is(canon, next)) throw kindError(mod, 'module.exports', 'a primitive value importers hold a copy of', 'another value');
    return { perGen: [] };
  }
  if (typeof canon === 'function' && slotOf(canon) !== undefined && slotOf(canon) !== slotOf(next)) {
    throw kindError(mod, 'module.exports', 'one function', 'another function (give it the same name and place)');
  }
  const perGen: string[] = [];
  if (!ownsNames(canon)) return { perGen };
  for (const name of Object.keys(next as object)) {
    if (SKIP.has(name) || mod.perGen.has(name)) continue;
    const nd = Object.getOwnPropertyDescriptor(next, name)!;
    const cd = Object.getOwnPropertyDescriptor(canon, name);
    if (!cd) {
      perGen.push(name);
      continue;
    }
    if (sameDispatch(cd, nd)) continue;
    if ('value' in cd && slotOf(cd.value) !== undefined && !('value' in nd && typeof nd.value === 'function')) {
      throw kindError(mod, name, kindOf(cd.value), 'value' in nd ? kindOf(nd.value) : 'accessor');
    }
    if (!cd.configurable) {
      const message = `${mod.id}: export "${name}" is a non-configurable property; the new value cannot reach importers`;
      throw new LivepatchError('LP_ERR_PATCH_EXPORT_KIND', message, { module: mod.id, export: name, message });
    }
    perGen.push(name);
  }
  return { perGen };
}

/**
 * Apply a plan (inside the commit step). The deployed version's own value of a name moves to a
 * shadow descriptor: work pinned to that version (its exports object *is* the canonical one) reads
 * and writes the shadow, every other generation its own exports object.
 */
export function applyCanon(mod: LiveModule, plan: CanonPlan): void {
  for (const name of plan.perGen) {
    if (mod.perGen.has(name)) continue;
    mod.perGen.add(name);
    const shadow: PropertyDescriptor | undefined = Object.getOwnPropertyDescriptor(mod.canon, name);
    const canon = mod.canon;
    Object.defineProperty(canon, name, {
      enumerable: true,
      configurable: true,
      get: () => {
        const e = resolveExports(mod);
        if (e !== canon && e !== undefined && e !== null) return (e as Record<string, unknown>)[name];
        if (!shadow) return undefined;
        return 'value' in shadow ? (shadow.value as unknown) : (shadow.get?.call(canon) as unknown);
      },
      set: (v: unknown) => {
        const e = resolveExports(mod);
        if (e !== canon && e !== undefined && e !== null) (e as Record<string, unknown>)[name] = v;
        else if (shadow && 'value' in shadow) shadow.value = v;
        else shadow?.set?.call(canon, v);
      },
    });
    if (!mod.kinds.has(name)) mod.kinds.set(name, 'value');
  }
}

interface Family {
  readonly protos: WeakSet<object>;
  readonly classes: WeakSet<object>;
}
const families = new WeakMap<LiveModule, Map<number, Family>>();

function joinFamily(fam: Family, C: AppFunction): void {
  fam.protos.add(C.prototype as object);
  fam.classes.add(C);
  if (Object.prototype.hasOwnProperty.call(C, Symbol.hasInstance)) return;
  Object.defineProperty(C, Symbol.hasInstance, {
    configurable: true,
    value(this: AppFunction, x: unknown): boolean {
      if (fnHasInstance.call(this, x)) return true;
      if (!fam.classes.has(this) || x === null || (typeof x !== 'object' && typeof x !== 'function')) return false;
      for (let p = Object.getPrototypeOf(x) as object | null; p; p = Object.getPrototypeOf(p) as object | null)
        if (fam.protos.has(p)) return true;
      return false;
    },
  });
}

function stub(ctl: VersionCtl, slot: number, key: string | symbol, kind: 'm' | 'g' | 's'): PropertyDescriptor {
  const call = (self: unknown, args: ArrayLike<unknown>): unknown => {
    const r = ctl.f(slot, self, args, undefined);
    if (r === ctl) throw new TypeError(`${String(key)} is not defined in this generation of the class`);
    return r;
  };
  if (kind === 'm') {
    return {
      configurable: true,
      writable: true,
      enumerable: false,
      value: function (this: unknown) {
        // eslint-disable-next-line prefer-rest-params
        return call(this, arguments);
      },
    };
  }
  return kind === 'g'
    ? {
        configurable: true,
        enumerable: false,
        get(this: unknown) {
          return call(this, []);
        },
      }
    : {
        configurable: true,
        enumerable: false,
        set(this: unknown, v: unknown) {
          call(this, [v]);
        },
      };
}

function isConstructorLike(fn: AppFunction): boolean {
  const d = Object.getOwnPropertyDescriptor(fn, 'prototype');
  return (
    !!d &&
    'value' in d &&
    d.value !== null &&
    typeof d.value === 'object' &&
    Object.getOwnPropertyNames(d.value).some((k) => k !== 'constructor')
  );
}

/**
 * Static state belongs to the class importers hold: a new version's own static data properties
 * become accessors to the canonical class's, so `Shop.count++` inside new code and `Shop.count`
 * read by importers are the same property.
 */
function shareStatics(canonC: AppFunction, C: AppFunction): void {
  for (const key of Reflect.ownKeys(C)) {
    if (key === 'length' || key === 'name' || key === 'prototype' || key === Symbol.hasInstance) continue;
    const d = Object.getOwnPropertyDescriptor(C, key)!;
    if (!('value' in d) || typeof d.value === 'function' || !d.configurable) continue;
    if (!Object.prototype.hasOwnProperty.call(canonC, key)) continue;
    const target = canonC as unknown as Record<string | symbol, unknown>;
    Object.defineProperty(C, key, {
      configurable: true,
      enumerable: d.enumerable,
      get: () => target[key],
      set: (v: unknown) => void (target[key] = v),
    });
  }
}

/** Link the classes of version cell `ctl` with their canonical classes (inside the commit step). */
export function linkClasses(mod: LiveModule, ctl: VersionCtl): void {
  const canonCtl = mod.canonCtl;
  if (!canonCtl || canonCtl === ctl) return;
  let fams = families.get(mod);
  if (!fams) families.set(mod, (fams = new Map<number, Family>()));
  // ES5-style constructors (a function whose prototype carries methods) get an instanceof family too.
  ctl.fns.forEach((fn, slot) => {
    const canonFn = canonCtl.fns[slot];
    if (!fn || !canonFn || fn === canonFn || ctl.classes.has(slot) || !isConstructorLike(canonFn)) return;
    let fam = fams!.get(slot);
    if (!fam) fams!.set(slot, (fam = { protos: new WeakSet(), classes: new WeakSet() }));
    joinFamily(fam, canonFn);
    joinFamily(fam, fn);
  });
  for (const [slot, { C, members }] of ctl.classes) {
    const canonC = canonCtl.classes.get(slot)?.C;
    if (!canonC || canonC === C) continue;
    let fam = fams.get(slot);
    if (!fam) fams.set(slot, (fam = { protos: new WeakSet(), classes: new WeakSet() }));
    joinFamily(fam, canonC);
    joinFamily(fam, C);
    shareStatics(canonC, C);
    for (const [key, mslot, kind, isStatic] of members) {
      if (kind === 'v') continue; // an object literal's own property; classes have none
      const target = isStatic ? canonC : (canonC.prototype as object);
      if (Object.prototype.hasOwnProperty.call(target, key)) continue;
      Object.defineProperty(target, key, stub(canonCtl, mslot, key, kind));
    }
  }
}
