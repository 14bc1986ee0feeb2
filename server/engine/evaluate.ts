/**
 * Evaluate one module version from its CommonJS text with `vm`, in the main context, in isolation
 * from `require.cache` (so old versions are collectable: nothing registers them anywhere).
 *
 * The script is a CommonJS wrapper that invokes itself, run with `runInThisContext({ timeout })`, so
 * synchronous top-level code that never ends is interrupted. Failures become registry errors with a
 * one-line message naming the module: syntax → LP_ERR_PATCH_SYNTAX, throw → LP_ERR_PATCH_LOAD,
 * timeout → LP_ERR_PATCH_TIMEOUT. A LivepatchError raised inside (a nested module, a migration) passes
 * through unchanged.
 */
import Module from 'node:module';
import { dirname, posix } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as vm from 'node:vm';
import { LivepatchError } from '../../shared/errors';
import type { VersionCtl } from './dispatch';
import { oneLine } from './keep';
import { nodeModulePaths } from './node-internals';
import { state, type EvalContext } from './state';

const ARGS = 'livepatch.evalArgs';

/** What to evaluate. */
export interface EvalInput {
  id: string;
  /** Version number, used only to name the script in stack traces. */
  version: number;
  js: string;
  runtimeFile: string;
  timeoutMs: number;
  /** Returns the value for a request that names a live or staged module, or `undefined` for anything else. */
  resolveLive: (fromId: string, request: string) => { value: unknown; esm?: boolean } | undefined;
  /** Kept-state context (pending map) for `keep` calls made by the module. */
  ctx: EvalContext;
  /** The version cell the instrumented text's preamble takes (absent for text that is not instrumented). */
  ctl?: VersionCtl;
}

/** Module ids a relative request from `fromId` may name, most likely first. */
export function candidateIds(fromId: string, request: string): string[] {
  if (!request.startsWith('./') && !request.startsWith('../') && request !== '.' && request !== '..') return [];
  const p = posix.normalize(posix.join(posix.dirname(fromId), request));
  const base = p.replace(/\.(c?js|jsx)$/, '');
  const out = [p, `${base}.ts`, `${base}.tsx`, `${base}.cts`, `${base}/index.ts`, `${base}/index.tsx`, `${base}.js`, `${base}/index.js`];
  return [...new Set(out)];
}

function makeRequire(input: EvalInput): NodeJS.Require {
  const base = Module.createRequire(input.runtimeFile);
  const req = function require(request: string): unknown {
    if (typeof request !== 'string') return base(request);
    const hit = input.resolveLive(input.id, request);
    return hit ? hit.value : base(request);
  } as NodeJS.Require;
  req.resolve = base.resolve;
  req.cache = base.cache;
  req.main = base.main;
  req.extensions = base.extensions;
  return req;
}

function compile(input: EvalInput): vm.Script {
  const wrapped =
    `(function (a) { return (function (exports, require, module, __filename, __dirname) {${input.js}\n` +
    `}).apply(a[0], a); })(globalThis[Symbol.for(${JSON.stringify(ARGS)})]);`;
  try {
    return new vm.Script(wrapped, { filename: `livepatch:${input.id}@v${input.version}` });
  } catch (e) {
    const line = /:(\d+)\n/.exec(String((e as Error)?.stack ?? ''))?.[1];
    const where = line ? `${input.id}(${line})` : input.id;
    throw new LivepatchError('LP_ERR_PATCH_SYNTAX', `${where}: ${oneLine(e)}`, {
      module: input.id,
      line: line ? Number(line) : undefined,
      message: oneLine(e),
    });
  }
}

/** Evaluate a module version; returns its final `module.exports`. */
export function evaluateModule(input: EvalInput): unknown {
  const script = compile(input);
  const mod = new Module(input.runtimeFile) as NodeJS.Module & { paths: string[] };
  mod.filename = input.runtimeFile;
  mod.paths = nodeModulePaths(dirname(input.runtimeFile));
  const args = [mod.exports, makeRequire(input), mod, input.runtimeFile, dirname(input.runtimeFile)];
  return runWrapped(input, script, args, () => {
    mod.loaded = true;
    return mod.exports as unknown;
  });
}

/** What an `import` of a CommonJS value gives: `default` is `module.exports`, its names are named exports. */
function namespaceOf(value: unknown): object {
  if (
    value !== null &&
    typeof value === 'object' &&
    Object.getPrototypeOf(value) === null &&
    (value as Record<symbol, unknown>)[Symbol.toStringTag] === 'Module'
  )
    return value;
  const ns = Object.create(null) as Record<string, unknown>;
  if (value !== null && (typeof value === 'object' || typeof value === 'function')) {
    for (const k of Object.keys(value))
      if (k !== 'default') Object.defineProperty(ns, k, { enumerable: true, get: () => (value as Record<string, unknown>)[k] });
  }
  ns['default'] = value;
  return ns;
}

/**
 * Evaluate a new version of an ES module from its rewritten text (esm.ts `evalText`); returns its
 * exports object. Imports of live or staged modules get their exports in the version's generation;
 * anything else (packages, builtins) is loaded with `require` from the module's place.
 */
export function evaluateEsm(input: EvalInput, makeExports: (own: object, stars: readonly object[]) => object): unknown {
  const wrapped =
    `(function (a) { return (function (__lp$imp, __lp$meta, __lp$exp) {"use strict";${input.js}\n` +
    `}).apply(undefined, a); })(globalThis[Symbol.for(${JSON.stringify(ARGS)})]);`;
  let script: vm.Script;
  try {
    script = new vm.Script(wrapped, { filename: `livepatch:${input.id}@v${input.version}` });
  } catch (e) {
    throw new LivepatchError('LP_ERR_PATCH_SYNTAX', `${input.id}: ${oneLine(e)}`, { module: input.id, message: oneLine(e) });
  }
  const req = Module.createRequire(input.runtimeFile);
  const cache = new Map<string, object>();
  const imp = (spec: string): object => {
    let ns = cache.get(spec);
    if (ns === undefined) {
      const hit = input.resolveLive(input.id, spec);
      ns = hit ? (hit.esm ? (hit.value as object) : namespaceOf(hit.value)) : namespaceOf(req(spec));
      cache.set(spec, ns);
    }
    return ns;
  };
  const meta = { url: pathToFileURL(input.runtimeFile).href, filename: input.runtimeFile, dirname: dirname(input.runtimeFile) };
  return runWrapped(input, script, [imp, meta, makeExports], (r) => r);
}

/** Run a compiled wrapper with `args`, the version cell and the kept-state context in place. */
function runWrapped<T>(input: EvalInput, script: vm.Script, args: unknown[], done: (result: unknown) => T): T {
  const g = globalThis as Record<symbol, unknown>;
  const prev = g[Symbol.for(ARGS)];
  g[Symbol.for(ARGS)] = args;
  state.evalStack.push(input.ctx);
  state.nextCtl = input.ctl;
  let result: unknown;
  try {
    result = script.runInThisContext({ timeout: input.timeoutMs, displayErrors: false });
  } catch (e) {
    if (e instanceof LivepatchError) throw e;
    if ((e as { code?: string })?.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
      const message = `${input.id}: top-level code did not finish within ${input.timeoutMs} ms`;
      throw new LivepatchError('LP_ERR_PATCH_TIMEOUT', message, { module: input.id, message });
    }
    throw new LivepatchError('LP_ERR_PATCH_LOAD', `${input.id}: ${oneLine(e)}`, { module: input.id, message: oneLine(e) });
  } finally {
    state.nextCtl = undefined;
    state.evalStack.pop();
    g[Symbol.for(ARGS)] = prev;
  }
  return done(result);
}

/** Await a promise with a timeout; `onTimeout` builds the error. */
export function withTimeout<T>(p: PromiseLike<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(onTimeout()), ms);
    Promise.resolve(p).then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the app's own rejection, passed on as is
        reject(e);
      },
    );
  });
}
