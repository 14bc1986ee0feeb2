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
import * as vm from 'node:vm';
import { LivepatchError } from '../../shared/errors';
import type { VersionCtl } from './dispatch';
import { oneLine } from './keep';
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
  resolveLive: (fromId: string, request: string) => { value: unknown } | undefined;
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
    throw new LivepatchError('LP_ERR_PATCH_SYNTAX', `${where}: ${oneLine(e)}`, { module: input.id, line: line ? Number(line) : undefined, message: oneLine(e) });
  }
}

/** Evaluate a module version; returns its final `module.exports`. */
export function evaluateModule(input: EvalInput): unknown {
  const script = compile(input);
  const mod = new Module(input.runtimeFile) as NodeJS.Module & { paths: string[] };
  mod.filename = input.runtimeFile;
  mod.paths = (Module as any)._nodeModulePaths(dirname(input.runtimeFile));
  const args = [mod.exports, makeRequire(input), mod, input.runtimeFile, dirname(input.runtimeFile)];
  const g = globalThis as any;
  const prev = g[Symbol.for(ARGS)];
  g[Symbol.for(ARGS)] = args;
  state.evalStack.push(input.ctx);
  state.nextCtl = input.ctl;
  try {
    script.runInThisContext({ timeout: input.timeoutMs, displayErrors: false });
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
  mod.loaded = true;
  return mod.exports;
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
        reject(e);
      },
    );
  });
}
