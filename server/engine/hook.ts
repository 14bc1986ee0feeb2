/**
 * The load hook: `Module.prototype._compile` is wrapped once so every CommonJS module of the app under
 * the project root becomes a live module as it loads.
 *
 * ts-node wraps each module's `_compile` and then calls the prototype's with the compiled JS, so this
 * one hook covers tsc output and ts-node alike. The module's text is instrumented for in-place
 * dispatch (instrument.ts) and compiled by Node as usual, inside a `keep` context for the module; its
 * `module.exports` is left exactly as the module made it. A failure of ours never breaks the host:
 * text we cannot parse or instrument is compiled as it was (the module is then not live, which is
 * recorded and reported), and a module's own errors propagate as they would without livepatch.
 */
import { analyze } from './analyze';
import { instrument, notInstrumented } from './instrument';
import type { LiveEngine } from './live-engine';
import { wrapCompile } from './node-internals';
import { slotFn } from './stage';
import { state } from './state';

const HOOKED = Symbol.for('livepatch.engine.compileHooked');

/**
 * Compile a module that is not made live as it is, in a context of its own: its top-level `keep()`
 * is `init()` (keep.ts), even while a live module that requires it is loading.
 */
function loadAsItIs(id: string, compile: () => unknown): unknown {
  state.evalStack.push({ id, notLive: true });
  try {
    return compile();
  } finally {
    state.evalStack.pop();
  }
}

/** Install the compile hook for `engine` (once per process). */
export function installCompileHook(engine: LiveEngine): void {
  wrapCompile(
    HOOKED,
    (original) =>
      function (this: NodeJS.Module, content: string, filename: string): unknown {
        let loc: ReturnType<LiveEngine['mapper']['locate']> | undefined;
        try {
          // ES modules that `require()` loads (Node ≥ 22) are the ES module hooks' (esm-hooks.ts).
          if (engine.mapper.inScope(filename) && !engine.mapper.isEsModule(filename)) loc = engine.mapper.locate(filename, content);
        } catch {
          loc = undefined;
        }
        if (!loc || engine.modules.has(loc.id)) return original.call(this, content, filename);
        const id = loc.id;
        const asItIs = (): unknown => loadAsItIs(id, () => original.call(this, content, filename));
        const skip = notInstrumented(content);
        if (skip) {
          engine.markNotLive(id, skip.reason, skip.kind);
          return asItIs();
        }
        let prepared: ReturnType<LiveEngine['prepareDeployed']>;
        let code: string;
        try {
          prepared = engine.prepareDeployed(loc, this);
          code = instrument(analyze(content), slotFn(prepared.mod));
        } catch (e) {
          engine.markNotLive(
            loc.id,
            `its JavaScript could not be analysed (${(e as Error)?.message ?? String(e)})`,
            'JavaScript the analyser could not parse',
          );
          return asItIs();
        }
        state.evalStack.push({ id: loc.id });
        state.nextCtl = prepared.ctl;
        let result: unknown;
        try {
          result = original.call(this, code, filename);
        } catch (e) {
          if (state.nextCtl === prepared.ctl) {
            // The instrumented text never started: compile the module as it was, not live.
            state.nextCtl = undefined;
            engine.markNotLive(
              loc.id,
              `its instrumented JavaScript did not compile (${(e as Error)?.message ?? String(e)})`,
              'instrumented JavaScript did not compile',
            );
            return asItIs();
          }
          throw e;
        } finally {
          if (state.nextCtl === prepared.ctl) state.nextCtl = undefined;
          state.evalStack.pop();
        }
        engine.adoptDeployed(this, loc, content, prepared);
        return result;
      },
  );
}
