/**
 * The type check that runs on this machine (offline `check`, `--check-here`): TypeScript's native
 * compiler when it checks the project as its build does, else the JavaScript compiler, chosen by
 * LIVEPATCH_CHECKER_ENGINE the way the agent chooses (`auto`, the default; `native`; `typescript`).
 *
 * Under `auto` the JavaScript compiler checks instead when the native one is not installed, when the
 * tsconfig uses what TypeScript 7 removed or leaves unset a default that changed, and when the native
 * compiler fails. It also checks again whenever the native compiler finds an error, and its
 * diagnostics are the result: a failing check reads exactly as the project's own build (tsc 5.9)
 * would put it, and a disagreement between the two compilers never fails a patch the build accepts.
 * A passing check, the common case, costs the native compiler's time only. The result says which
 * compiler's diagnostics it holds (`engine`) and, under `auto`, why not the native one's
 * (`engineNote`). Both compilers are loaded here, on use: the other commands need neither.
 */
import { LivepatchError, type CheckerEngine, type CheckerEngineSetting, type Diagnostic } from '../shared';
import type { ProgramChecker } from '../shared/typecheck';

/** What a check on this machine found, and which compiler found it. */
export interface LocalCheckResult {
  diagnostics: Diagnostic[];
  hasErrors: boolean;
  /** Files of the project type-checked. */
  checked: number;
  engine: CheckerEngine;
  /** Why `auto` did not use the native compiler. */
  engineNote?: string;
}

/** The compiler setting from the environment (LIVEPATCH_CHECKER_ENGINE); exit 2 when it is not one of the three. */
export function engineSetting(env: NodeJS.ProcessEnv = process.env): CheckerEngineSetting {
  const v = env['LIVEPATCH_CHECKER_ENGINE'];
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === 'native' || v === 'typescript') return v;
  throw new LivepatchError(
    'LP_ERR_CLI_USAGE',
    `invalid LIVEPATCH_CHECKER_ENGINE=${JSON.stringify(v)}: expected auto, native or typescript`,
  );
}

/**
 * Type-check the project at `root` with `overlay` (absolute path → source) laid over the disk.
 * `javascript` gives the JavaScript compiler's checker of the same project (made only if it checks).
 */
export function checkLocally(
  root: string,
  overlay: Map<string, string>,
  javascript: () => ProgramChecker,
  setting: CheckerEngineSetting = engineSetting(),
): LocalCheckResult {
  let note: string | undefined;
  if (setting !== 'typescript') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nt = require('../shared/native-typecheck') as typeof import('../shared/native-typecheck');
    const missing = nt.nativeUnavailable();
    if (missing !== undefined && setting === 'native')
      throw new LivepatchError('LP_ERR_CLI_USAGE', `LIVEPATCH_CHECKER_ENGINE=native: ${missing}`);
    note = missing;
    if (missing === undefined) {
      const native = new nt.NativeChecker(root);
      try {
        note = setting === 'native' ? undefined : native.incompatibility();
        if (note === undefined) {
          const r = native.check(overlay);
          if (!r.hasErrors || setting === 'native')
            return { diagnostics: r.diagnostics, hasErrors: r.hasErrors, checked: r.checked, engine: 'native' };
          note = 'the native compiler found errors: the JavaScript compiler checked again';
        }
      } catch (e) {
        if (setting === 'native') throw e;
        note = `the native compiler failed: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}`;
      } finally {
        native.close();
      }
    }
  }
  const r = javascript().check(overlay);
  return {
    diagnostics: r.diagnostics,
    hasErrors: r.hasErrors,
    checked: r.checked,
    engine: 'typescript',
    ...(note !== undefined ? { engineNote: note } : {}),
  };
}
