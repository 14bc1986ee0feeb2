/**
 * Node's module loader surfaces that are not in its typings, in one place: the CommonJS cache and
 * `_nodeModulePaths` (undocumented), `Module.prototype._compile` (undocumented, wrapped by ts-node
 * too), and `module.registerHooks` / `module.register` (documented, but newer than some supported
 * Node versions' typings). Everything else in the engine reaches them only through this module, so
 * a change in Node shows up here and nowhere else.
 */
import Module from 'node:module';

/** `Module.prototype._compile`: compiles and runs one CommonJS module's text. */
export type Compile = (this: NodeJS.Module, content: string, filename: string) => unknown;

/** `module.registerHooks` (Node ≥ 22.15): in-thread hooks such as `{ load }` (see esm-hooks.ts). */
export type RegisterHooks = (hooks: object) => unknown;
/** `module.register`: hooks in a module of their own, run on a loader thread. */
export type Register = (url: string, opts: object) => void;

interface ModuleStatics {
  _cache: Record<string, NodeJS.Module | undefined>;
  _nodeModulePaths(from: string): string[];
  registerHooks?: RegisterHooks;
  register?: Register;
  flushCompileCache?: () => void;
}

const statics = Module as unknown as ModuleStatics;
const proto = Module.prototype as unknown as { _compile: Compile } & Record<symbol, unknown>;

/** The CommonJS module cache (`require.cache`, shared by every `require`). */
export function requireCache(): Record<string, NodeJS.Module | undefined> {
  return statics._cache;
}

/** The `node_modules` folders a module in `dir` resolves bare specifiers from. */
export function nodeModulePaths(dir: string): string[] {
  return statics._nodeModulePaths(dir);
}

/**
 * Replace `Module.prototype._compile` once per process: `make` gets the original and returns the
 * replacement. `marker` records that it was done (a second engine in the process finds it set).
 */
export function wrapCompile(marker: symbol, make: (original: Compile) => Compile): void {
  if (proto[marker]) return;
  const original = proto._compile;
  Object.defineProperty(proto, marker, { value: true });
  proto._compile = make(original);
}

/** `module.registerHooks`, when this Node has it (22.15 and later). */
export function registerHooksFn(): RegisterHooks | undefined {
  return typeof statics.registerHooks === 'function' ? statics.registerHooks.bind(Module) : undefined;
}

/** `module.register` (off-thread loader hooks), when this Node has it. */
export function registerFn(): Register | undefined {
  return typeof statics.register === 'function' ? statics.register.bind(Module) : undefined;
}

/**
 * `module.flushCompileCache` (Node ≥ 22.10): write the compile cache (NODE_COMPILE_CACHE) now rather
 * than at exit. No-op where Node has no compile cache.
 */
export function flushCompileCache(): void {
  if (typeof statics.flushCompileCache === 'function') statics.flushCompileCache.call(Module);
}
