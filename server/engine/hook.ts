/**
 * The load hook: `Module.prototype._compile` is wrapped once so every CommonJS module of the app under
 * the project root becomes a live module as it loads.
 *
 * ts-node wraps each module's `_compile` and then calls the prototype's with the compiled JS, so this
 * one hook covers tsc output and ts-node alike. The original compile runs first (inside a `keep`
 * context for the module); then the engine swaps `module.exports` for the facade. A failure of ours
 * never breaks the host: the module simply stays as it was (not live) and a line goes to stderr.
 */
import Module from 'node:module';
import type { LiveEngine } from './live-engine';
import { state } from './state';

const HOOKED = Symbol.for('livepatch.engine.compileHooked');

/** Install the compile hook for `engine` (once per process). */
export function installCompileHook(engine: LiveEngine): void {
  const proto = Module.prototype as any;
  if (proto[HOOKED]) return;
  const original: Function = proto._compile;
  Object.defineProperty(proto, HOOKED, { value: true });
  proto._compile = function (this: NodeJS.Module, content: string, filename: string): unknown {
    let loc: ReturnType<LiveEngine['mapper']['locate']> | undefined;
    try {
      if (engine.mapper.inScope(filename)) loc = engine.mapper.locate(filename, content);
    } catch {
      loc = undefined;
    }
    if (!loc || engine.modules.has(loc.id)) return original.call(this, content, filename);
    state.evalStack.push({ id: loc.id });
    let result: unknown;
    try {
      result = original.call(this, content, filename);
    } finally {
      state.evalStack.pop();
    }
    try {
      engine.adoptDeployed(this, loc, content);
    } catch (e) {
      process.stderr.write(`livepatch: ${loc.id} is not live: ${(e as Error)?.message ?? e}\n`);
    }
    return result;
  };
}
