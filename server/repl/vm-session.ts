/**
 * One admin REPL session: its own vm context, so top-level declarations of one input are visible to
 * the next (script-scope bindings persist per context) without touching the host's globals. Inputs
 * run one at a time; synchronous code is interrupted after the timeout (vm's watchdog), awaited code
 * is abandoned after the rest of it (a race), so the host's event loop stall is bounded by the timeout.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as vm from 'node:vm';
import { LivepatchError } from '../../shared/errors';
import type { LiveModules } from './modules';
import { CapturedConsole } from './render';

/** Runs `fn` pinned to the session's generation (see Engine.pin). */
export type Pin = <T>(fn: () => T) => T;

/** Host globals an admin session can use; everything else comes from the fresh context. */
const SHARED_GLOBALS = [
  'process',
  'Buffer',
  'URL',
  'URLSearchParams',
  'TextEncoder',
  'TextDecoder',
  'AbortController',
  'AbortSignal',
  'setTimeout',
  'clearTimeout',
  'setInterval',
  'clearInterval',
  'setImmediate',
  'clearImmediate',
  'queueMicrotask',
  'structuredClone',
  'fetch',
  'performance',
  'EventTarget',
  'Event',
  'crypto',
] as const;

/** A vm context with a captured console, `mod(id)` and a `require` that maps live modules to their facades. */
/** What evaluated code threw (any value, not necessarily an Error), told apart from the agent's own failures. */
export class EvalThrew extends Error {
  constructor(readonly thrown: unknown) {
    super('the evaluated code threw');
  }
}

export class VmSession {
  readonly console = new CapturedConsole();
  readonly context: vm.Context;

  constructor(modules: LiveModules) {
    const hostRequire = createRequire(join(modules.root, '__livepatch_repl.js'));
    const replRequire = (spec: string): unknown => {
      const id = modules.resolveId(spec);
      return id ? modules.load(id) : hostRequire(spec);
    };
    const sandbox: Record<string, unknown> = {};
    const g = globalThis as unknown as Record<string, unknown>;
    for (const name of SHARED_GLOBALS) if (g[name] !== undefined) sandbox[name] = g[name];
    const exportsObj = {};
    Object.assign(sandbox, {
      console: this.console.makeConsole(),
      require: replRequire,
      mod: (id: string) => modules.load(modules.resolveId(id) ?? id),
      exports: exportsObj,
      module: { exports: exportsObj },
    });
    this.context = vm.createContext(sandbox, { name: 'livepatch-repl' });
  }

  /**
   * Run `js` (already transpiled; `isAsync` when it is a top-level-await wrapper returning a promise).
   * Throws LivepatchError LP_ERR_EVAL_TIMEOUT, or an EvalThrew carrying what the code threw.
   */
  async run(js: string, isAsync: boolean, timeoutMs: number, pin: Pin): Promise<unknown> {
    let script: vm.Script;
    try {
      script = new vm.Script(js, { filename: 'repl' });
    } catch (e) {
      throw new EvalThrew(e);
    }
    const started = Date.now();
    // The pin lasts until the returned promise settles: the timeout race settles it even when the
    // awaited code never does, so an abandoned evaluation cannot keep a generation live.
    return pin(() => {
      let value: unknown;
      try {
        value = script.runInContext(this.context, { timeout: timeoutMs, breakOnSigint: false });
      } catch (e) {
        if ((e as NodeJS.ErrnoException | undefined)?.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') {
          return Promise.reject(new LivepatchError('LP_ERR_EVAL_TIMEOUT', `evaluation was interrupted after ${timeoutMs} ms`));
        }
        return Promise.reject(new EvalThrew(e));
      }
      return isAsync ? settleWithin(value, Math.max(1, timeoutMs - (Date.now() - started)), timeoutMs) : Promise.resolve(value);
    });
  }
}

/** `value` awaited, or LP_ERR_EVAL_TIMEOUT after `ms`; a rejection becomes an EvalThrew. */
function settleWithin(value: unknown, ms: number, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new LivepatchError('LP_ERR_EVAL_TIMEOUT', `evaluation did not settle within ${timeoutMs} ms`)),
      ms,
    );
    Promise.resolve(value).then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(new EvalThrew(e));
      },
    );
  });
}
