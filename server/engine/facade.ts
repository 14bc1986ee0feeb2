/**
 * Facades: the stable object every importer of a live module receives.
 *
 * Exported functions become trampolines, exported classes become facade classes whose instances
 * dispatch methods to the caller's generation, other values become getters that read per generation.
 * While one generation is live (`state.multi` false) a trampoline reads `mod.cur` and never touches
 * AsyncLocalStorage; no Proxy is involved anywhere.
 */
import { makeClassFacade, syncClassFacade } from './class-facade';
import { resolveExports, state, type ExportKind, type LiveModule } from './state';

const fnToString = Function.prototype.toString;
// Local aliases: a trampoline then reads one closure slot instead of going through the imported
// module's namespace object on every call (measurably cheaper on the single-generation path).
const st = state;
const resolveFor = resolveExports;

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

/** Export names → kinds of an exports object (own enumerable keys; getters are read). */
export function exportKinds(e: any): Map<string, ExportKind> {
  const out = new Map<string, ExportKind>();
  if (e === null || (typeof e !== 'object' && typeof e !== 'function')) return out;
  for (const name of Object.keys(e)) {
    if (typeof e === 'function' && (name === 'prototype' || name === 'length' || name === 'name')) continue;
    let v: unknown;
    try {
      v = e[name];
    } catch {
      v = undefined;
    }
    out.set(name, kindOf(v));
  }
  return out;
}

function copyNameLength(t: Function, original: unknown): void {
  if (typeof original !== 'function') return;
  Object.defineProperty(t, 'name', { value: original.name, configurable: true });
  Object.defineProperty(t, 'length', { value: original.length, configurable: true });
}

/** A trampoline for the function export `name` (or the whole exports when `name` is undefined). */
function functionTrampoline(mod: LiveModule, name: string | undefined, original: unknown): Function {
  const t =
    name === undefined
      ? function (this: unknown): unknown {
          const f = st.multi ? resolveFor(mod) : mod.cur;
          // eslint-disable-next-line prefer-rest-params
          return new.target === undefined ? f.apply(this, arguments) : Reflect.construct(f, arguments, new.target);
        }
      : function (this: unknown): unknown {
          const f = (st.multi ? resolveFor(mod) : mod.cur)[name];
          // eslint-disable-next-line prefer-rest-params
          return new.target === undefined ? f.apply(this, arguments) : Reflect.construct(f, arguments, new.target);
        };
  copyNameLength(t, original);
  return t;
}

/** Define facade property `name` of the given kind on `target`. */
function defineExport(mod: LiveModule, target: any, name: string, kind: ExportKind, sample: unknown): void {
  if (kind === 'function') {
    Object.defineProperty(target, name, { value: functionTrampoline(mod, name, sample), enumerable: true, configurable: true, writable: true });
  } else if (kind === 'class') {
    const F = makeClassFacade(() => (st.multi ? resolveFor(mod) : mod.cur)[name], sample as Function);
    Object.defineProperty(target, name, { value: F, enumerable: true, configurable: true, writable: true });
  } else {
    Object.defineProperty(target, name, {
      enumerable: true,
      configurable: true,
      get: () => (st.multi ? resolveFor(mod) : mod.cur)?.[name],
      set: (v: unknown) => {
        const e = st.multi ? resolveFor(mod) : mod.cur;
        if (e) e[name] = v;
      },
    });
  }
}

/** Build the facade for `mod` from a first exports object and record its export kinds. */
export function buildFacade(mod: LiveModule, exports: any): void {
  mod.shape = shapeOf(exports);
  mod.kinds = exportKinds(exports);
  if (mod.shape === 'other') {
    mod.facade = exports;
    return;
  }
  let facade: any;
  if (mod.shape === 'function') facade = functionTrampoline(mod, undefined, exports);
  else if (mod.shape === 'class') facade = makeClassFacade(() => (st.multi ? resolveFor(mod) : mod.cur), exports);
  else facade = {};
  if (Object.prototype.hasOwnProperty.call(exports, '__esModule')) {
    Object.defineProperty(facade, '__esModule', { value: exports.__esModule });
  }
  mod.facade = facade;
  for (const [name, kind] of mod.kinds) defineExport(mod, facade, name, kind, exports[name]);
}

/**
 * Add facade entries for exports that `exports` (a new version) has and the facade lacks, and keep
 * class facades' prototype chains and new methods in step. Returns the names added (so a discarded
 * stage can remove them).
 */
export function extendFacade(mod: LiveModule, exports: any): string[] {
  const added: string[] = [];
  if (mod.shape === 'other') return added;
  if (mod.shape === 'class') syncClassFacade(mod.facade, exports);
  for (const [name, kind] of exportKinds(exports)) {
    const sample = exports[name];
    if (mod.kinds.has(name)) {
      if (kind === 'class' && mod.facade[name]) syncClassFacade(mod.facade[name], sample);
      continue;
    }
    mod.kinds.set(name, kind);
    defineExport(mod, mod.facade, name, kind, sample);
    added.push(name);
  }
  return added;
}

/** Undo `extendFacade` for names that a discarded stage introduced. */
export function retractFacade(mod: LiveModule, names: readonly string[]): void {
  for (const name of names) {
    mod.kinds.delete(name);
    delete mod.facade[name];
  }
}

/** The first function or class export whose kind differs in `exports` (a new version), if any. */
export function kindConflict(mod: LiveModule, exports: any): { name: string; was: string; now: string } | undefined {
  const shape = shapeOf(exports);
  if (shape !== mod.shape) return { name: 'module.exports', was: mod.shape, now: shape };
  for (const [name, kind] of exportKinds(exports)) {
    const was = mod.kinds.get(name);
    // A value export is a getter reading the caller's generation, whatever it holds (e.g. an
    // `export let handler` that was undefined and now is a function): only trampolines need a stable kind.
    if (was !== undefined && was !== 'value' && was !== kind) return { name, was, now: kind };
  }
  return undefined;
}
