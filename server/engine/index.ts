/**
 * The engine's public entry points: install it (before the app's modules load), find it, and the two
 * helpers live modules use, `pin` and `keep`.
 */
import { resolve } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { installCtlGlobal } from './dispatch';
import { installEsm } from './esm-load';
import { installCompileHook } from './hook';
import { CTL_GLOBAL } from './instrument';
import { keep, type KeepOptions } from './keep';
import { LiveEngine } from './live-engine';
import { ModuleMapper } from './module-id';
import { state } from './state';
import type { Engine } from './types';

export { keep, type KeepOptions };
export type { Engine } from './types';

export interface InstallOptions {
  /** Project root: modules under it (not node_modules) become live. Default: LIVEPATCH_ROOT or cwd. */
  root?: string;
  /** The app's entry file (default: the process's main script), to tell whether the app is ESM. */
  entry?: string;
}

/** Install the engine (idempotent: a second call returns the engine already installed). */
export function install(opts: InstallOptions = {}): Engine {
  if (state.engine) return state.engine as Engine;
  const engine = new LiveEngine(
    new ModuleMapper(resolve(opts.root ?? process.env['LIVEPATCH_ROOT'] ?? process.cwd()), {
      warn: (m) => process.stderr.write(`livepatch: ${m}\n`),
    }),
  );
  state.engine = engine;
  installCtlGlobal(Symbol.for(CTL_GLOBAL));
  installCompileHook(engine);
  installEsm(engine, opts.entry ?? process.argv[1]);
  return engine;
}

/**
 * Install from the environment (LIVEPATCH_ROOT or cwd); never throws into the host. Worker threads
 * inherit `-r` preloads: the engine is per process and lives on the main thread only.
 */
export function installFromEnv(): void {
  try {
    if (!isMainThread) return;
    install({ root: process.env['LIVEPATCH_ROOT'] || process.cwd() });
  } catch (e) {
    process.stderr.write(`livepatch: engine not installed: ${(e as Error)?.message ?? e}\n`);
  }
}

/** The installed engine, if any. */
export function getEngine(): Engine | undefined {
  return state.engine as Engine | undefined;
}

/**
 * Run `fn` pinned to the current generation: every call through a live module's facade made by it,
 * across awaits and timers, sees that generation until it (or its promise) settles. Without an
 * engine it just calls `fn`.
 */
export function pin<T>(fn: () => T): T {
  const engine = state.engine as Engine | undefined;
  return engine ? engine.pin(fn) : fn();
}
