/**
 * Staging: build a new generation from new module versions without making it visible.
 *
 * The staged generation starts as a copy of the current one; each change is evaluated (lazily, in
 * require order, pinned to the staged generation so its top-level calls see staged code) and replaces
 * its module's exports there. Requires of live modules get their facades, requires of staged or new
 * modules load them first. Export kinds are checked, exported promises awaited, then the verify
 * module runs. On any failure every trace is undone (facade additions, pending kept state).
 */
import { createHash } from 'node:crypto';
import { LivepatchError } from '../../shared/errors';
import type { StageOptions, Staged, VersionRecord } from './types';
import { clearMethodCaches } from './class-facade';
import { candidateIds, evaluateModule, withTimeout } from './evaluate';
import { buildFacade, extendFacade, kindConflict, retractFacade } from './facade';
import { oneLine } from './keep';
import type { ModuleMapper } from './module-id';
import { state, type Generation, type LiveModule, type VersionEntry } from './state';
import { runVerify } from './verify';

/** What staging needs from the engine. */
export interface StageHost {
  readonly mapper: ModuleMapper;
  readonly modules: Map<string, LiveModule>;
  currentGen(): Generation;
  /** The exports of `entry` if some part of the engine still holds them (no re-evaluation needed). */
  exportsInMemory(id: string, entry: VersionEntry): unknown;
  /** Recompute `state.multi` after a stage or generation came or went. */
  recomputeMulti(): void;
}

/** One module to stage: new code (a patch) or an earlier version (a rollback). */
export interface StageItem {
  id: string;
  js: string;
  source: string;
  /** Earlier version to restore (rollback): its record is reused as is. */
  reuse?: VersionEntry;
}

/** Engine-side state of a staged generation. */
export interface StagedState {
  readonly pub: Staged;
  readonly gen: Generation;
  /** Changed module id → the version entry it gets. */
  readonly entries: Map<string, VersionEntry>;
  readonly newMods: Map<string, LiveModule>;
  readonly added: Map<string, string[]>;
  readonly pending: Map<string, Map<string, { value: unknown; shape: number | string | undefined }>>;
}

let stageCounter = 0;
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

function newLiveModule(host: StageHost, id: string): LiveModule {
  return { id, facade: undefined, cur: undefined, shape: 'object', kinds: new Map(), versions: [], sourceFile: host.mapper.sourceFileOf(id), runtimeFile: host.mapper.runtimeFileOf(id) };
}

/** Evaluate `items` into a staged generation (see file header). Throws a LivepatchError on failure. */
export async function stageItems(host: StageHost, items: StageItem[], opts: StageOptions, kind: 'patch' | 'rollback'): Promise<StagedState> {
  const base = host.currentGen();
  const gen: Generation = { n: base.n + 1, versions: new Map(base.versions), exp: new Map(base.exp), inflight: 0, released: false, summary: { generation: base.n + 1, kind, time: '', changed: [] } };
  const s: StagedState = {
    pub: { stageId: `stage-${process.pid}-${++stageCounter}`, baseGeneration: base.n, changes: [], newModules: [] },
    gen,
    entries: new Map(),
    newMods: new Map(),
    added: new Map(),
    pending: new Map(),
  };
  for (const i of items) {
    // Ids are POSIX paths relative to the root; anything else would place a module outside the project.
    if (typeof i.id !== 'string' || i.id === '' || i.id.startsWith('/') || /^[A-Za-z]:/.test(i.id) || i.id.split('/').some((p) => p === '..' || p === '.' || p === '') || i.id.includes('\\')) {
      throw new LivepatchError('LP_ERR_PATCH_UNKNOWN_MODULE', `${String(i.id)} is not a module id (a POSIX path relative to the project root)`, { module: String(i.id) });
    }
  }
  const byId = new Map(items.map((i) => [i.id, i]));
  const loading = new Set<string>();
  const loadTimeoutMs = opts.loadTimeoutMs ?? 2000;

  const modOf = (id: string): LiveModule | undefined => host.modules.get(id) ?? s.newMods.get(id);
  const resolveLive = (fromId: string, request: string): { value: unknown } | undefined => {
    for (const cand of candidateIds(fromId, request)) {
      if (byId.has(cand)) {
        load(cand);
        const m = modOf(cand);
        return { value: m?.facade ?? gen.exp.get(cand) };
      }
      const live = host.modules.get(cand);
      if (live) return { value: live.facade };
    }
    return undefined;
  };

  const load = (id: string): void => {
    if (s.entries.has(id) || loading.has(id)) return;
    loading.add(id);
    const item = byId.get(id)!;
    let mod = host.modules.get(id);
    const isNew = !mod;
    if (!mod) s.newMods.set(id, (mod = newLiveModule(host, id)));
    const record: VersionRecord = item.reuse?.record ?? {
      id,
      version: mod.versions.length + 1,
      generation: gen.n,
      hash: sha256(item.source || item.js),
      source: item.source,
      sourceFile: mod.sourceFile,
      runtimeFile: mod.runtimeFile,
    };
    const entry: VersionEntry = item.reuse ?? { record, js: item.js };
    let modExports = item.reuse ? host.exportsInMemory(id, item.reuse) : undefined;
    if (modExports === undefined) {
      const pending = new Map();
      s.pending.set(id, pending);
      modExports = evaluateModule({ id, version: record.version, js: entry.js, runtimeFile: mod.runtimeFile, timeoutMs: loadTimeoutMs, resolveLive, ctx: { id, pending } });
    }
    if (isNew) buildFacade(mod, modExports);
    else {
      const clash = kindConflict(mod, modExports);
      if (clash) {
        const message = `${id}: export "${clash.name}" changed from ${clash.was} to ${clash.now}`;
        throw new LivepatchError('LP_ERR_PATCH_EXPORT_KIND', message, { module: id, export: clash.name, message });
      }
      s.added.set(id, extendFacade(mod, modExports));
    }
    gen.exp.set(id, modExports);
    gen.versions.set(id, entry);
    s.entries.set(id, entry);
    loading.delete(id);
  };

  state.staging++;
  host.recomputeMulti();
  try {
    state.als.run(gen, () => {
      for (const item of items) load(item.id);
    });
    for (const id of s.entries.keys()) await awaitExportedPromises(id, gen.exp.get(id), loadTimeoutMs);
    if (opts.verifyJs !== undefined) await runVerify(host, gen, opts.verifyJs, opts.verifyTimeoutMs ?? 5000, loadTimeoutMs, resolveLive);
  } catch (e) {
    undoStage(host, s);
    throw e instanceof LivepatchError ? e : new LivepatchError('LP_ERR_PATCH_LOAD', oneLine(e));
  }
  return { ...s, pub: { ...s.pub, changes: [...s.entries.values()].map((e) => e.record), newModules: [...s.newMods.keys()] } };
}

async function awaitExportedPromises(id: string, exports: any, timeoutMs: number): Promise<void> {
  if (exports === null || typeof exports !== 'object') return;
  for (const name of Object.keys(exports)) {
    const v = exports[name];
    if (!(v instanceof Promise)) continue;
    const timeout = (): Error => new LivepatchError('LP_ERR_PATCH_TIMEOUT', `${id}: exported promise "${name}" did not settle within ${timeoutMs} ms`, { module: id, export: name });
    try {
      await withTimeout(v, timeoutMs, timeout);
    } catch (e) {
      if (e instanceof LivepatchError) throw e;
      throw new LivepatchError('LP_ERR_PATCH_LOAD', `${id}: exported promise "${name}" rejected: ${oneLine(e)}`, { module: id, export: name, message: oneLine(e) });
    }
  }
}

/** Remove every trace of a stage that will not be committed. */
export function undoStage(host: StageHost, s: StagedState): void {
  for (const [id, names] of s.added) {
    const mod = host.modules.get(id);
    if (mod) retractFacade(mod, names);
  }
  s.added.clear();
  s.pending.clear();
  s.gen.exp.clear();
  s.gen.released = true;
  state.staging = Math.max(0, state.staging - 1);
  clearMethodCaches();
  host.recomputeMulti();
}
