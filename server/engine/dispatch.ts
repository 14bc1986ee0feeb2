/**
 * Version control cells: the runtime side of in-place dispatch (see instrument.ts).
 *
 * Every evaluation of a live module (the deployed load, a patch, a rollback that re-evaluates) gets
 * one `VersionCtl`. The module's instrumented code registers its dispatch points in the cell as they
 * are created (`d` declarations, `e` expressions, `k` classes, `o` object literals) and each dispatch
 * point starts with `if (cell.s && …cell.f(slot, …))`. The engine sets `s` (stale) whenever the
 * version is not the only one of its module in use; `f` then finds the caller's generation's version
 * of the module and calls the function registered there under the same slot, or tells the caller to
 * run its own body when that is itself.
 */
import type { EsmCtlRequest } from './esm';
import { state, type LiveModule } from './state';
import type { AppFunction } from './types';

/** Functions and classes made by instrumented code → their slot (tells dispatch points from other values). */
export const registered = new WeakMap<object, number>();

/** A class registered by a version, with its dispatchable members (for stubs and `instanceof`). */
export interface RegisteredClass {
  readonly C: AppFunction;
  readonly members: readonly MemberSpec[];
}
/**
 * [runtime key, slot, kind, static 0/1, length] as written by the instrumenter. The kind is a method,
 * getter or setter ('m' | 'g' | 's'), or 'v' for a function that is a property's value in an object
 * literal; the length, for an arrow function value, is the one JavaScript gives it.
 */
export type MemberSpec = readonly [string | symbol, number, 'm' | 'g' | 's' | 'v', 0 | 1, number?];

const st = state;

/** The module's version that work running now belongs to (only asked while `s` is set). */
function callerCtl(mod: LiveModule): VersionCtl | undefined {
  if (st.multi) {
    const g = st.als.getStore() ?? st.legacy;
    const c = g?.ctl.get(mod.id);
    if (c !== undefined) return c;
  }
  return mod.curCtl;
}

export class VersionCtl {
  /** Stale: another version of the module is in use, so calls must find the caller's version. */
  s = false;
  /** Slot → the function (or class) this version registered there. */
  readonly fns: (AppFunction | undefined)[] = [];
  /** Class slot → class and members (classes of this version). */
  readonly classes = new Map<number, RegisteredClass>();

  constructor(readonly mod: LiveModule) {}

  /**
   * Forward a call made to this version's function in `slot`: returns the result of the caller's
   * version's function, or `this` (a value no function returns) when the call must run here.
   */
  f(slot: number, self: unknown, args: ArrayLike<unknown>, nt: AppFunction | undefined): unknown {
    const c = callerCtl(this.mod);
    if (c === this || c === undefined) return this;
    const t = c.fns[slot];
    if (t === undefined) return this;
    return nt === undefined ? Reflect.apply(t, self, args) : Reflect.construct(t, args, nt);
  }

  /** Register a function declaration. */
  d(slot: number, fn: AppFunction): void {
    this.fns[slot] = fn;
    registered.set(fn, slot);
  }

  /** Register a function expression; restore the name and length JavaScript would have given it. */
  e<T extends AppFunction>(slot: number, fn: T, name: string | undefined, length: number | undefined): T {
    if (typeof fn !== 'function') return fn;
    if (name !== undefined && fn.name !== name) Object.defineProperty(fn, 'name', { value: name, configurable: true });
    if (length !== undefined && fn.length !== length) Object.defineProperty(fn, 'length', { value: length, configurable: true });
    this.fns[slot] = fn;
    registered.set(fn, slot);
    return fn;
  }

  /** Register a class and its members. */
  k<T extends AppFunction>(slot: number, C: T, members: MemberSpec[], name?: string): T {
    if (typeof C !== 'function') return C;
    if (name !== undefined && C.name === '') Object.defineProperty(C, 'name', { value: name, configurable: true });
    this.fns[slot] = C;
    registered.set(C, slot);
    this.members(C, C.prototype as object, members, true);
    this.classes.set(slot, { C, members });
    return C;
  }

  /** An ES module's body starts (deployed text only, see esm.ts): `keep` calls belong to it. */
  b(): void {
    st.esm?.begin(this);
  }

  /** An ES module's body finished (deployed text only): it becomes a live module. */
  a(): void {
    st.esm?.adopt(this);
  }

  /** Register the methods and accessors of an object literal. */
  o<T extends object>(obj: T, members: MemberSpec[]): T {
    this.members(obj, obj, members, false);
    return obj;
  }

  private members(statics: object, proto: object, members: readonly MemberSpec[], isClass: boolean): void {
    for (const [key, slot, kind, isStatic, length] of members) {
      const d = Object.getOwnPropertyDescriptor(isClass && isStatic ? statics : proto, key);
      const fn: unknown = kind === 'g' ? d?.get : kind === 's' ? d?.set : d?.value;
      if (typeof fn !== 'function') continue;
      // An arrow function's parameters became `(...__lp$a)` (instrument.ts): its length is restored.
      if (length !== undefined && fn.length !== length) Object.defineProperty(fn, 'length', { value: length, configurable: true });
      this.fns[slot] = fn;
      registered.set(fn, slot);
    }
  }
}

const nobody = { mod: { id: '' } } as unknown as LiveModule;

/** Install the global the instrumented preamble calls to take the cell prepared for it. */
export function installCtlGlobal(key: symbol): void {
  const g = globalThis as Record<symbol, unknown>;
  if (g[key]) return;
  Object.defineProperty(g, key, {
    configurable: true,
    value: (esm?: EsmCtlRequest): VersionCtl => {
      // An ES module's virtual cell module asks with its URL, namespace and slot keys (esm.ts).
      if (esm !== undefined) return st.esm?.prepare(esm) ?? new VersionCtl(nobody);
      const c = st.nextCtl;
      st.nextCtl = undefined;
      // Instrumented text evaluated outside the engine's control (never in practice): an inert cell.
      return (c as VersionCtl | undefined) ?? new VersionCtl(nobody);
    },
  });
}
