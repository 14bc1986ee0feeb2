/**
 * Verify hooks: a module (`__verify__.ts`) evaluated against a staged generation whose exported
 * functions are each called and awaited, pinned to that generation so they exercise the new code.
 *
 * The synchronous part of each call runs inside a tiny `vm` script with a timeout so a hook that
 * never returns is interrupted; the returned promise is awaited with the same timeout. A throw,
 * rejection or timeout vetoes the stage with LP_ERR_PATCH_VERIFY naming the function.
 */
import { join } from 'node:path';
import * as vm from 'node:vm';
import { LivepatchError } from '../../shared/errors';
import { evaluateModule, withTimeout } from './evaluate';
import { oneLine } from './keep';
import type { StageHost } from './stage';
import { state, type Generation } from './state';

/** Module id under which the verify module is evaluated. */
export const VERIFY_ID = '__verify__.ts';
const CALL = 'livepatch.verifyCall';
const callScript = new vm.Script(`globalThis[Symbol.for(${JSON.stringify(CALL)})]()`, { filename: 'livepatch:verify-call' });

function veto(name: string, message: string): LivepatchError {
  const text = `verify function "${name}" failed: ${message}`;
  return new LivepatchError('LP_ERR_PATCH_VERIFY', text, { module: VERIFY_ID, function: name, message });
}

/** Evaluate the verify module and run each exported function pinned to `gen`. */
export async function runVerify(
  host: StageHost,
  gen: Generation,
  js: string,
  timeoutMs: number,
  loadTimeoutMs: number,
  resolveLive: (fromId: string, request: string) => { value: unknown } | undefined,
): Promise<void> {
  const runtimeFile = join(host.mapper.root, '__verify__.js');
  let hooks: unknown;
  try {
    hooks = state.als.run(gen, () =>
      evaluateModule({
        id: VERIFY_ID,
        version: 1,
        js,
        runtimeFile,
        timeoutMs: loadTimeoutMs,
        resolveLive,
        ctx: { id: VERIFY_ID, pending: new Map() },
      }),
    );
  } catch (e) {
    throw veto('(module)', e instanceof LivepatchError ? e.message : oneLine(e));
  }
  if (hooks === null || (typeof hooks !== 'object' && typeof hooks !== 'function')) return;
  for (const name of Object.keys(hooks)) {
    const fn = (hooks as Record<string, unknown>)[name];
    if (typeof fn !== 'function') continue;
    const g = globalThis as Record<symbol, unknown>;
    let result: unknown;
    try {
      g[Symbol.for(CALL)] = fn;
      result = state.als.run(gen, () => callScript.runInThisContext({ timeout: timeoutMs, displayErrors: false }) as unknown);
    } catch (e) {
      const timedOut = (e as { code?: string })?.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT';
      throw veto(name, timedOut ? `did not finish within ${timeoutMs} ms` : oneLine(e));
    } finally {
      g[Symbol.for(CALL)] = undefined;
    }
    try {
      await withTimeout(Promise.resolve(result), timeoutMs, () => veto(name, `did not settle within ${timeoutMs} ms`));
    } catch (e) {
      throw e instanceof LivepatchError && e.code === 'LP_ERR_PATCH_VERIFY' ? e : veto(name, oneLine(e));
    }
  }
}
