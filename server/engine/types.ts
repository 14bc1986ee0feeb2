/**
 * The engine's public contract, used by the pipeline, the agent and the REPL.
 *
 * The engine owns live modules (facades with trampolined exports), generations, per-request pinning,
 * the atomic commit and rollback, and drain/release. It knows nothing of TypeScript checking, sockets
 * or journals: the pipeline gives it transpiled CommonJS and it evaluates, stages and commits.
 */
import type { EventEmitter } from 'node:events';
import type { CommitResult, ExportsResult, LiveGeneration, RestartResult, StatusResult } from '../../shared/ops';
import type { Diagnostic, GenerationSummary, ModuleVersionInfo } from '../../shared/patch';

/** One version of one live module. Source and JS are kept for every version (rollback, history). */
export interface VersionRecord {
  /** Module id: POSIX path of the TypeScript source relative to the project root, e.g. `src/rates.ts`. */
  readonly id: string;
  /** 1 = deployed, +1 each time a patch changed the module. */
  readonly version: number;
  /** The generation that introduced this version. */
  readonly generation: number;
  /** sha256 hex of the TypeScript source (of the JS when no TS source was found). */
  readonly hash: string;
  /** TypeScript source text ('' when the deployed module has no TS source on disk). */
  readonly source: string;
  /** Absolute path of the TypeScript source (may not exist for deployed-JS-only apps). */
  readonly sourceFile: string;
  /** Absolute path of the runtime JS file (deployed modules) or where it would be (new modules). */
  readonly runtimeFile: string;
}

/** One module change handed to `stage`. */
export interface StageChange {
  id: string;
  /** New TypeScript source (hashed; kept for history/rollback). */
  source: string;
  /** Its CommonJS transpilation. */
  js: string;
}

export interface StageOptions {
  /** Timeout for each module's synchronous top-level code and for exported promises (ms, default 2000). */
  loadTimeoutMs?: number;
  /** Transpiled verify module (see PatchSet.verify); its exported functions run pinned to the staged generation. */
  verifyJs?: string;
  /** Timeout for each verify function (ms, default 5000). */
  verifyTimeoutMs?: number;
}

/** A staged generation: loaded, migrated and verified, not yet visible to anyone. */
export interface Staged {
  readonly stageId: string;
  /** The generation this was staged on; commit is a conflict if it is no longer current. */
  readonly baseGeneration: number;
  readonly changes: readonly VersionRecord[];
  readonly newModules: readonly string[];
}

export interface CommitMeta {
  who?: string;
  message?: string;
  patchId?: string;
  /** The key that signed the patch set (signed sets only). */
  signer?: { keyId: string; name?: string };
  /** Which side type-checked the patch: the host's own checker, or a client (`--check-here`). */
  checkedBy?: 'host' | 'client';
}

/**
 * What only a cluster primary's engine can do (server/cluster): it runs no app code itself, its workers
 * do. The agent checks `engine.cluster` and answers LP_ERR_CLUSTER_NONE where there is none.
 */
export interface ClusterCapability {
  /** Rolling restart of every worker, one at a time. */
  restartWorkers(opts: { deadlineMs: number; onProgress?: (message: string, fraction: number) => void }): Promise<RestartResult>;
  /** Status rows: each worker's own generation, flagged when it differs from the cluster's. */
  workerRows(): Promise<NonNullable<StatusResult['workers']>>;
  /**
   * Health summed over the workers (the primary counts nothing itself): the cumulative counters of
   * `generations` (every live one when not given), and with `baseline` the watch's baseline of that
   * generation (see server/agent/health-window.ts), each summed over the workers that answered. A
   * worker that exits or does not answer in time is left out; `workers` says how many answered.
   */
  health(query: { generations?: number[]; baseline?: { generation: number; ms: number } }): Promise<ClusterHealth>;
  /** Live generations across the workers, with their health summed (status and health on a primary). */
  liveHealth(): Promise<LiveGeneration[]>;
}

/** What ClusterCapability.health answers. */
export interface ClusterHealth {
  generations: Map<number, { inflight: number; counts: Float64Array }>;
  baseline?: Float64Array;
  /** Workers that answered. */
  workers: number;
}

/**
 * Events: 'commit' (GenerationSummary), 'drained' (generation number: its in-flight count reached 0
 * while it was not current), 'released' (generation number: its code was dropped).
 */
export interface Engine extends EventEmitter {
  /** Present on a cluster primary's engine only: what its workers can be asked to do. */
  readonly cluster?: ClusterCapability;
  readonly root: string;
  readonly currentGeneration: number;
  /** Live module ids, sorted. */
  moduleIds(): string[];
  /** The version of `id` at `generation` (default current). */
  getVersion(id: string, generation?: number): VersionRecord | undefined;
  /** One row per live module at `generation` (default current). */
  listVersions(generation?: number): ModuleVersionInfo[];
  exportsOf(id: string): ExportsResult['exports'];
  /**
   * Optional: the module's own exports object (not the facade) of the version live at `generation`
   * (default current); undefined when not loaded. Lets side-effect-free REPL evaluation call a
   * generation's code without the facade's AsyncLocalStorage lookup, which V8 counts as a side effect.
   */
  exportsAt?(id: string, generation?: number): unknown;
  /**
   * Optional: the static verdict on transpiled changes, without running anything: changes a commit
   * could not reach (LP_ERR_PATCH_UNREACHABLE), top-level effects a new version would repeat
   * (LP_ERR_PATCH_EFFECT), modules that are not live (LP_ERR_PATCH_NOT_LIVE). `stage` refuses on the
   * same verdict, so `check` and a dry run agree.
   */
  verdict?(changes: readonly { id: string; js: string; source?: string }[]): Diagnostic[];
  /** Optional: files under the root the app loaded that could not be made live, with the reason. */
  notLiveModules?(): { module: string; reason: string }[];
  history(): GenerationSummary[];
  liveGenerations(): LiveGeneration[];
  /**
   * Optional: the cumulative health counters (see health.ts) of a live `generation` (default current),
   * undefined once it was released. The agent's watch reads and snapshots them.
   */
  healthOf?(generation?: number): Float64Array | undefined;

  /**
   * Evaluate new module versions in isolation (vm, CommonJS wrapper), run kept-state migrations and
   * verify hooks. Throws LivepatchError (LP_ERR_PATCH_LOAD / _TIMEOUT / _VERIFY / _MIGRATE /
   * _EXPORT_KIND / _SYNTAX) and leaves everything unchanged on failure.
   */
  stage(changes: StageChange[], opts?: StageOptions): Promise<Staged>;
  /** One synchronous swap to a new generation. Throws LP_ERR_PATCH_CONFLICT if the base is no longer current. */
  commit(staged: Staged, meta?: CommitMeta): CommitResult;
  /** Drop a staged generation without committing it. */
  discard(staged: Staged): void;
  /**
   * Atomically restore the module versions of `to` (default: the generation before the current one) as
   * a new generation. Throws LP_ERR_ROLLBACK_TARGET.
   */
  rollback(to?: number, meta?: CommitMeta): Promise<CommitResult>;
  /**
   * Run `fn` pinned to the current generation until it (or its returned promise) settles. With
   * `generation` (a live one), pinned to that generation instead (REPL sessions opened on a generation).
   */
  pin<T>(fn: () => T, generation?: number): T;
  /**
   * Hold the dispatch of incoming HTTP requests (they wait, they are not dropped) until `until`
   * settles or `maxMs` passes. Used so journal replay finishes before any request runs.
   */
  holdRequests(until: Promise<unknown>, maxMs?: number): void;
}

/**
 * A function or class of the app's (or a built-in the engine wraps), of any signature. The engine
 * stores, compares and wraps these, reads their `prototype`, and calls them only through `apply`,
 * `Reflect.apply` or `Reflect.construct` with the caller's own `this` and arguments, so no narrower
 * type fits; this alias is the one place the broad type is named.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- see above
export type AppFunction = Function;
