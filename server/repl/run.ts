/**
 * One evaluation, start to finish: type-check the input against the session's declarations and the
 * live program (nothing runs on a type error), rewrite imports to live-module lookups, transpile,
 * evaluate by role, render. Errors leave as LivepatchError: LP_ERR_EVAL_TYPE (details.diagnostics),
 * LP_ERR_EVAL_THROWN (the thrown value's message only), LP_ERR_EVAL_TIMEOUT, LP_ERR_EVAL_SIDE_EFFECT.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Role } from '../../shared/auth';
import { LivepatchError } from '../../shared/errors';
import type { EvalResult } from '../../shared/ops';
import type { Engine } from '../engine/types';
import type { ReplChecker } from './checker';
import { evaluatePure, MOD_GLOBAL, type PureResult } from './inspect-eval';
import { PRELUDE_NAME, type LiveModules } from './modules';
import { limit, messageOf, render } from './render';
import type { ReplSession } from './session';
import { rewriteImports, toJs, wrapObjectLiteral, wrapTopLevelAwait } from './transpile';
import { EvalThrew, type Pin } from './vm-session';

export interface RunInput {
  session: ReplSession;
  code: string;
  role: Role;
  timeoutMs: number;
  modules: LiveModules;
  checker: ReplChecker;
  engine: Engine;
}

async function typeCheck(r: RunInput, input: string): Promise<void> {
  const { session, modules } = r;
  const prelude = modules.prelude();
  const f = session.fileFor(input);
  const diagnostics = await r.checker.check({
    root: modules.root,
    file: session.file,
    inputStart: f.inputStart,
    inputEnd: f.inputEnd,
    files: {
      ...modules.overlays(session.generation),
      [join(modules.root, PRELUDE_NAME)]: { text: prelude, version: createHash('sha1').update(prelude).digest('hex') },
      [session.file]: { text: f.text, version: f.version },
    },
  });
  const errors = diagnostics.filter((d) => d.category === 'error');
  if (errors.length) {
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
    throw new LivepatchError('LP_ERR_EVAL_TYPE', `the input does not type-check, nothing ran: TS${errors[0]!.code}${more}`, {
      diagnostics,
    });
  }
}

/** Load the program in the checker ahead of the first input (a cold check takes seconds). */
export function warmUp(checker: ReplChecker, modules: LiveModules): void {
  const prelude = modules.prelude();
  const file = join(modules.root, '__livepatch_repl_warmup.ts');
  checker
    .check({
      root: modules.root,
      file,
      inputStart: 0,
      inputEnd: 0,
      files: { [join(modules.root, PRELUDE_NAME)]: { text: prelude, version: 'warm' }, [file]: { text: 'export {};\n', version: '1' } },
    })
    .then(
      () => checker.drop(file),
      () => undefined,
    );
}

/** Evaluate one input in its session; resolves to the rendered result. */
export async function runInput(r: RunInput): Promise<EvalResult> {
  const started = performance.now();
  const input = wrapObjectLiteral(r.code);
  await typeCheck(r, input);
  const { session, modules, engine, timeoutMs } = r;
  const gen = session.generation;
  const pin: Pin = (fn) => (gen !== undefined ? engine.pin(fn, gen) : engine.pin(fn));
  const admin = r.role === 'admin';
  let value: unknown;
  // Read-only inputs come back already rendered (see evaluatePure): their values are never touched here.
  let pure: PureResult | undefined;
  let consoleOut: EvalResult['console'] = [];
  let consoleCut = false;
  try {
    if (admin) {
      const js = toJs(rewriteImports(input, (spec) => `require(${JSON.stringify(spec)})`));
      const wrapped = wrapTopLevelAwait(js);
      const vm = session.vm(modules);
      vm.console.reset();
      try {
        value = await vm.run(wrapped ?? js, wrapped !== null, timeoutMs, pin);
      } finally {
        consoleOut = vm.console.entries;
        consoleCut = vm.console.truncated;
      }
    } else {
      const js = toJs(
        rewriteImports(input, (spec) => {
          const id = modules.resolveId(spec);
          if (!id) throw new LivepatchError('LP_ERR_EVAL_SIDE_EFFECT', `read-only evaluation can import live modules only, not "${spec}"`);
          return `globalThis.${MOD_GLOBAL}(${JSON.stringify(id)})`;
        }),
      );
      const snapshot = modules.snapshot(gen);
      try {
        pure = pin(() => evaluatePure(js, snapshot, timeoutMs));
      } catch (e) {
        if (e instanceof LivepatchError && e.code === 'LP_ERR_EVAL_SIDE_EFFECT' && engine.liveGenerations().length > 1) {
          // Facades consult AsyncLocalStorage while several generations are live, which V8 counts as a side effect.
          throw new LivepatchError(
            'LP_ERR_EVAL_SIDE_EFFECT',
            `${e.message} (while several generations are live, calls into live modules count as side effects: retry when old generations have drained)`,
          );
        }
        throw e;
      }
    }
  } catch (e) {
    if (e instanceof LivepatchError) throw e;
    if (e instanceof EvalThrew) {
      throw new LivepatchError('LP_ERR_EVAL_THROWN', messageOf(e.thrown), consoleOut.length ? { console: consoleOut } : undefined);
    }
    throw e;
  }
  if (pure?.thrown) throw new LivepatchError('LP_ERR_EVAL_THROWN', limit(pure.text, 4096).text);
  // Read-only inputs cannot declare anything that outlives them, so only admin inputs are remembered.
  if (admin) session.remember(input);
  const out = pure ? limit(pure.text) : render(value);
  if (pure?.truncated) out.truncated = true;
  return {
    output: out.text,
    console: consoleOut,
    truncated: out.truncated || consoleCut,
    durationMs: Math.round((performance.now() - started) * 10) / 10,
  };
}
