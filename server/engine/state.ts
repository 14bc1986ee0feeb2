/**
 * The engine's runtime state shared by facades, pinning and staging: the AsyncLocalStorage that pins
 * work to a generation, the `multi` flag that gates every lookup, and the shapes of live modules and
 * generations.
 *
 * The state lives on a global symbol so that two copies of this package in one process (e.g. a
 * hoisted and a nested install) still share one engine, one store and one set of facades.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { GenerationSummary } from '../../shared/patch';
import type { VersionCtl } from './dispatch';
import type { EsmCtlRequest } from './esm';
import type { Health } from './health';
import type { VersionRecord } from './types';

/** What an export is; a change of kind between versions is refused at stage. */
export type ExportKind = 'function' | 'class' | 'value';

/** One version of one module: its record and the JS it was evaluated from (kept for rollback). */
export interface VersionEntry {
  readonly record: VersionRecord;
  readonly js: string;
}

/** One live module: the exports object every importer holds and the versions behind it. */
export interface LiveModule {
  readonly id: string;
  /**
   * What importers hold: the deployed `module.exports` (a new module's first exports). Never replaced
   * or wrapped; patched code is reached through its functions' in-place dispatch.
   */
  canon: unknown;
  /** The cell of the version that made `canon` (class stubs and `instanceof` families hang off it). */
  canonCtl: VersionCtl | undefined;
  /** The current generation's exports object of this module (the version's own). */
  cur: unknown;
  /** The current generation's version cell. */
  curCtl: VersionCtl | undefined;
  /** Cells of the versions some live or staged generation uses (all stale when more than one). */
  inUse: Set<VersionCtl>;
  /** Dispatch point key → slot, the same in every version. */
  readonly slots: Map<string, number>;
  /** How the module's `module.exports` itself is shaped (an object of exports, or a function/class). */
  shape: 'object' | 'function' | 'class' | 'other';
  /** Export name → kind, as first seen (new names are added when a later version introduces them). */
  kinds: Map<string, ExportKind>;
  /** Names of `canon` turned into accessors that read the caller's generation's value. */
  readonly perGen: Set<string>;
  /** Versions by number - 1. */
  versions: VersionEntry[];
  sourceFile: string;
  runtimeFile: string;
  /** Version 1's exports and cell of a deployed module (kept: the module stays in require.cache anyway). */
  deployed?: { exports: unknown; ctl: VersionCtl };
  /** An ES module: `canon` is its namespace, and new versions are evaluated from ES module text. */
  esm?: boolean;
}

/** A live module with no version yet (the deployed load or a patch's first evaluation fills it in). */
export function newLiveModule(id: string, sourceFile: string, runtimeFile: string): LiveModule {
  return {
    id,
    canon: undefined,
    canonCtl: undefined,
    cur: undefined,
    curCtl: undefined,
    inUse: new Set(),
    slots: new Map(),
    shape: 'object',
    kinds: new Map(),
    perGen: new Set(),
    versions: [],
    sourceFile,
    runtimeFile,
  };
}

/** A generation: a version of every live module, plus the exports while it is live. */
/** One `keep` value of a module and the shape it was kept with. */
export interface KeptValue {
  value: unknown;
  shape: number | string | undefined;
}

export interface Generation {
  readonly n: number;
  /** Module id → version (kept forever: history and rollback need it). */
  readonly versions: Map<string, VersionEntry>;
  /** Module id → exports object; emptied when the generation is released so its code can be collected. */
  readonly exports: Map<string, unknown>;
  /** Module id → the version cell (emptied on release with `exports`). */
  readonly ctl: Map<string, VersionCtl>;
  inflight: number;
  released: boolean;
  /** What this generation's code did in production (health.ts); dropped when the generation is released. */
  health: Health | undefined;
  readonly summary: Omit<GenerationSummary, 'live' | 'current' | 'inflight'>;
}

/** Evaluation context of the module whose top-level code is running (for `keep`). */
export interface EvalContext {
  readonly id: string;
  /** Pending kept values (staged evaluation); undefined means write through (deployed load). */
  readonly pending?: Map<string, KeptValue>;
  /** A module loaded as it is (not live): its `keep` calls are `init()`, not a live module's state. */
  readonly notLive?: boolean;
}

export interface SharedState {
  readonly als: AsyncLocalStorage<Generation>;
  /** True while more than one generation is live or one is staged: only then do trampolines consult `als`. */
  multi: boolean;
  /** Number of staged generations not yet committed or discarded (they keep `multi` on). */
  staging: number;
  /**
   * The generation of work that carries no store while `multi` is on: the one that was current when
   * `multi` (and with it AsyncLocalStorage) was switched on. Work started before then was not given a
   * store (single-generation mode pays no AsyncLocalStorage at all) and belongs to it.
   */
  legacy: Generation | undefined;
  /** Stack of modules being evaluated (nested requires). */
  readonly evalStack: EvalContext[];
  /** Kept state: module id → key → value. */
  readonly kept: Map<string, Map<string, KeptValue>>;
  engine: unknown;
  /** The cell the next instrumented module evaluation takes in its preamble. */
  nextCtl: unknown;
  /** How deployed ES modules reach the engine (set by the engine that handles them; see esm.ts). */
  esm?: {
    prepare(req: EsmCtlRequest): VersionCtl;
    begin(ctl: VersionCtl): void;
    adopt(ctl: VersionCtl): void;
  };
}

const KEY = Symbol.for('livepatch.engine.state');

function create(): SharedState {
  return {
    als: new AsyncLocalStorage<Generation>(),
    multi: false,
    staging: 0,
    legacy: undefined,
    evalStack: [],
    kept: new Map(),
    engine: undefined,
    nextCtl: undefined,
  };
}

/** The process-wide engine state. */
const slot = globalThis as { [KEY]?: SharedState };
export const state: SharedState = (slot[KEY] ??= create());

/**
 * The exports a call through `mod`'s facade must use (only asked while `multi` is on): those of the
 * generation the work is pinned to, or of the legacy generation for work without a store, else (that
 * generation was released) the current generation's.
 */
export function resolveExports(mod: LiveModule): unknown {
  const g = state.als.getStore() ?? state.legacy;
  if (g !== undefined) {
    const e = g.exports.get(mod.id);
    if (e !== undefined) return e;
  }
  return mod.cur;
}
