/**
 * The engine: the registry of live modules and generations, the atomic commit and rollback, and the
 * drain/release bookkeeping. Staging, facades, pinning and queries live in their own files; this one
 * owns the state transitions.
 *
 * Retention: a generation stays live while it is current or has work in flight; when neither holds it
 * is released (its exports map is emptied). Version records, source and JS text of every version are
 * kept for history and rollback; generation 1's exports stay (the deployed modules stay in
 * require.cache) so rolling back to deployed code needs no re-evaluation.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import Module from 'node:module';
import { LivepatchError } from '../../shared/errors';
import type { CommitResult, ExportsResult, LiveGeneration } from '../../shared/ops';
import type { GenerationSummary, ModuleVersionInfo } from '../../shared/patch';
import { applyCanon, exportKinds, linkClasses, shapeOf } from './canon';
import { VersionCtl as VersionCtlClass, type VersionCtl } from './dispatch';
import { endEffects } from './effects';
import { commitKept } from './keep';
import type { ModuleLocation, ModuleMapper } from './module-id';
import { newHealth, summarizeHealth, type Health } from './health';
import { installErrorCounting } from './health-errors';
import { requireCache } from './node-internals';
import { pinWith, RequestPinning } from './pinning';
import * as q from './queries';
import { stageItems, staticVerdict, undoStage, type StageHost, type StagedState } from './stage';
import { newLiveModule, state, type Generation, type LiveModule, type VersionEntry } from './state';
import type { Diagnostic } from '../../shared/patch';
import type { CommitMeta, Engine, StageChange, StageOptions, Staged, VersionRecord } from './types';
import { sha256 } from '../../shared/hash';

/** The live module engine (see file header). */
export class LiveEngine extends EventEmitter implements Engine, StageHost {
  readonly root: string;
  readonly modules = new Map<string, LiveModule>();
  /** Files under the root the app loaded that could not be made live: id → reason. */
  readonly notLive = new Map<string, string>();
  /** Every generation ever made, index n - 1. */
  readonly gens: Generation[] = [];
  private readonly live = new Set<Generation>();
  private current: Generation;
  private readonly staged = new Map<string, StagedState>();
  readonly stagingGens = new Set<Generation>();
  private readonly pinning: RequestPinning;

  constructor(readonly mapper: ModuleMapper) {
    super();
    this.root = mapper.root;
    const g1: Generation = {
      n: 1,
      versions: new Map(),
      exports: new Map(),
      ctl: new Map(),
      inflight: 0,
      released: false,
      health: newHealth(),
      summary: { generation: 1, kind: 'deploy', time: new Date().toISOString(), changed: [] },
    };
    this.gens.push(g1);
    this.live.add(g1);
    this.current = g1;
    this.pinning = new RequestPinning(this);
    this.pinning.install();
    installErrorCounting(() => this.current);
  }

  /** Whether `file` (a module's compiled or source file) is a live module's. */
  isLiveFile(file: string): boolean {
    for (const m of this.modules.values()) if (m.runtimeFile === file || m.sourceFile === file) return true;
    return false;
  }

  get currentGeneration(): number {
    return this.current.n;
  }

  currentGen(): Generation {
    return this.current;
  }

  acquire(g: Generation): void {
    g.inflight++;
  }

  release(g: Generation): void {
    g.inflight--;
    if (g.inflight <= 0 && g !== this.current && !g.released) this.drop(g);
  }

  /**
   * Switch multi-generation mode on or off. On: AsyncLocalStorage starts being used (requests and
   * `pin` get stores) and work without a store is attributed to the generation current right now.
   * Off: AsyncLocalStorage is disabled so its async_hooks cost nothing while one generation is live.
   */
  recomputeMulti(): void {
    this.refreshStale();
    const multi = this.live.size > 1 || state.staging > 0;
    if (multi === state.multi) return;
    if (multi) {
      state.legacy = this.current;
      state.multi = true;
    } else {
      state.multi = false;
      state.legacy = undefined;
      state.als.disable();
    }
  }

  /**
   * Set each module's version cells stale or not: a cell is fresh (its functions run their own body
   * with no lookup) only while it is the one version of its module that live and staged generations
   * use. A cell no generation uses any more stays stale for good: calls that still reach it (captured
   * references) are forwarded to the caller's generation.
   */
  private refreshStale(): void {
    const gens: Generation[] = [...this.live, ...this.stagingGens];
    for (const mod of this.modules.values()) {
      const used = new Set<VersionCtl>();
      for (const g of gens) {
        const c = g.ctl.get(mod.id);
        if (c) used.add(c);
      }
      for (const c of mod.inUse) if (!used.has(c)) c.s = true;
      const one = used.size === 1;
      for (const c of used) c.s = !one;
      mod.inUse = used;
    }
  }

  /** The static verdict on a patch (see stage.ts): unreachable changes and repeated top-level effects. */
  verdict(changes: readonly { id: string; js: string; source?: string }[]): Diagnostic[] {
    return staticVerdict(this, changes);
  }

  notLiveModules(): { module: string; reason: string }[] {
    return [...this.notLive].map(([module, reason]) => ({ module, reason })).sort((a, b) => (a.module < b.module ? -1 : 1));
  }

  /**
   * Record a file the app loaded that cannot be live (listed in status; patches naming it are
   * refused). `kind` groups the stderr report: files recorded in the same tick (start-up loads them
   * together) are reported as one line per kind, with a count.
   */
  markNotLive(id: string, reason: string, kind = reason): void {
    if (this.notLive.has(id) || this.modules.has(id)) return;
    this.notLive.set(id, reason);
    const batch = this.notLiveBatch ?? new Map<string, string[]>();
    if (!this.notLiveBatch) {
      this.notLiveBatch = batch;
      setImmediate(() => this.reportNotLive()).unref();
    }
    batch.set(kind, [...(batch.get(kind) ?? []), id]);
  }

  private notLiveBatch: Map<string, string[]> | undefined;

  private reportNotLive(): void {
    const batch = this.notLiveBatch;
    this.notLiveBatch = undefined;
    for (const [kind, ids] of batch ?? []) {
      const list = ids.length > 5 ? `${ids.slice(0, 5).join(', ')}, …` : ids.join(', ');
      process.stderr.write(`livepatch: ${ids.length} file${ids.length === 1 ? '' : 's'} not live (${kind}): ${list}\n`);
    }
  }

  /** Emit to listeners without letting one that throws break a commit or a response's release. */
  private notify(event: 'commit' | 'drained' | 'released', arg: unknown): void {
    try {
      this.emit(event, arg);
    } catch (e) {
      process.stderr.write(`livepatch: a '${event}' listener threw: ${(e as Error)?.message ?? e}\n`);
    }
  }

  private drop(g: Generation): void {
    g.inflight = 0;
    this.notify('drained', g.n);
    g.released = true;
    g.health = undefined;
    g.exports.clear();
    g.ctl.clear();
    this.live.delete(g);
    this.recomputeMulti();
    this.notify('released', g.n);
  }

  /**
   * Prepare a deployed module for its first evaluation: its record (not yet registered) and the cell
   * its instrumented text will take. `adoptDeployed` registers it once the evaluation succeeded.
   */
  prepareDeployed(loc: ModuleLocation, m: NodeJS.Module): { mod: LiveModule; ctl: VersionCtl } {
    const mod = newLiveModule(loc.id, loc.sourceFile, m.filename);
    return { mod, ctl: new VersionCtlClass(mod) };
  }

  /** Make a just-evaluated deployed module live: record version 1. Its exports object is left as it is. */
  adoptDeployed(m: NodeJS.Module, loc: ModuleLocation, js: string, prepared: { mod: LiveModule; ctl: VersionCtl }): void {
    this.adopt(prepared.mod, prepared.ctl, m.exports, js);
  }

  /**
   * Make a deployed module live from its evaluated exports (`module.exports`, or an ES module's
   * namespace) and JavaScript text: version 1 of `mod`, with cell `ctl`.
   */
  adopt(mod: LiveModule, ctl: VersionCtl, exports: unknown, js: string): void {
    if (this.modules.has(mod.id)) return;
    let source = '';
    try {
      source = readFileSync(mod.sourceFile, 'utf8');
    } catch {
      // Deployed without TS sources: hash the JS instead.
    }
    // Without the source, the build manifest's hash of it (what a client checks against), else the JS's.
    const hash = source ? sha256(source) : (this.mapper.manifestHash(mod.id) ?? sha256(js));
    const record: VersionRecord = {
      id: mod.id,
      version: 1,
      generation: 1,
      hash,
      source,
      sourceFile: mod.sourceFile,
      runtimeFile: mod.runtimeFile,
    };
    mod.versions.push({ record, js });
    mod.canon = exports;
    mod.canonCtl = ctl;
    mod.cur = exports;
    mod.curCtl = ctl;
    mod.shape = shapeOf(exports);
    mod.kinds = exportKinds(exports);
    mod.deployed = { exports, ctl };
    this.modules.set(mod.id, mod);
    this.notLive.delete(mod.id);
    // A module loaded late (lazy require) is the same deployed code in every generation.
    for (const g of this.gens) g.versions.set(mod.id, mod.versions[0]!);
    for (const g of this.live) {
      g.exports.set(mod.id, exports);
      g.ctl.set(mod.id, ctl);
    }
    for (const g of this.stagingGens) {
      g.versions.set(mod.id, mod.versions[0]!);
      g.exports.set(mod.id, exports);
      g.ctl.set(mod.id, ctl);
    }
    mod.inUse.add(ctl);
  }

  exportsInMemory(id: string, entry: VersionEntry): { exports: unknown; ctl: VersionCtl } | undefined {
    const mod = this.modules.get(id);
    if (mod && entry.record.version === 1 && mod.deployed !== undefined && mod.versions[0] === entry) return mod.deployed;
    for (const g of this.live) {
      const ctl = g.ctl.get(id);
      if (g.versions.get(id) === entry && g.exports.has(id) && ctl) return { exports: g.exports.get(id), ctl };
    }
    return undefined;
  }

  moduleIds(): string[] {
    return [...this.modules.keys()].sort();
  }
  getVersion(id: string, generation?: number): VersionRecord | undefined {
    return this.genOf(generation)?.versions.get(id)?.record;
  }
  listVersions(generation?: number): ModuleVersionInfo[] {
    return q.listVersions(this.genOf(generation));
  }
  exportsOf(id: string): ExportsResult['exports'] {
    return q.exportsOf(this.modules.get(id), id);
  }
  /**
   * The raw exports of `id` at a live `generation` (default current): the version's own object, not
   * the facade, so a call needs no generation lookup (the REPL's side-effect-free evaluator relies on
   * that). Undefined when that generation is not live.
   */
  exportsAt(id: string, generation?: number): unknown {
    const g = this.genOf(generation);
    return g !== undefined && this.live.has(g) ? g.exports.get(id) : undefined;
  }
  history(): GenerationSummary[] {
    return q.history(this.gens, this.live, this.current);
  }
  liveGenerations(): LiveGeneration[] {
    return [...this.live]
      .sort((a, b) => a.n - b.n)
      .map((g) => ({
        generation: g.n,
        inflight: g.inflight,
        current: g === this.current,
        ...(g.health ? { health: summarizeHealth(g.health) } : {}),
      }));
  }
  /** The raw health counters of a live generation (default current); undefined once released. */
  healthOf(generation?: number): Health | undefined {
    const g = this.genOf(generation);
    return g && this.live.has(g) ? g.health : undefined;
  }
  private genOf(n?: number): Generation | undefined {
    return n === undefined ? this.current : this.gens[n - 1];
  }

  async stage(changes: StageChange[], opts: StageOptions = {}): Promise<Staged> {
    // A source that some version of the module already had is that version again (as in a rollback):
    // its record is reused rather than stored anew, so apply/rollback cycles do not grow memory.
    const items = changes.map((c) => {
      const reuse = this.modules.get(c.id)?.versions.find((v) => v.js === c.js && v.record.source === c.source);
      return reuse ? { id: c.id, js: c.js, source: c.source, reuse } : { id: c.id, js: c.js, source: c.source };
    });
    const s = await stageItems(this, items, opts, 'patch');
    this.staged.set(s.staged.stageId, s);
    return s.staged;
  }

  discard(staged: Staged): void {
    const s = this.staged.get(staged.stageId);
    if (!s) return;
    this.staged.delete(staged.stageId);
    for (const id of s.newMods.keys()) state.kept.delete(id);
    undoStage(this, s);
  }

  commit(staged: Staged, meta: CommitMeta = {}): CommitResult {
    const s = this.staged.get(staged.stageId);
    if (!s) throw new LivepatchError('LP_ERR_PATCH_STAGE_UNKNOWN');
    if (s.staged.baseGeneration !== this.current.n) {
      this.discard(staged);
      throw new LivepatchError('LP_ERR_PATCH_CONFLICT', `staged on generation ${s.staged.baseGeneration}, current is ${this.current.n}`, {
        baseGeneration: s.staged.baseGeneration,
        currentGeneration: this.current.n,
      });
    }
    // From here to the end: one synchronous step, no await, nothing observable half-done.
    this.staged.delete(staged.stageId);
    const prev = this.current;
    const gen = s.gen;
    Object.assign(gen.summary, {
      time: new Date().toISOString(),
      who: meta.who,
      message: meta.message,
      patchId: meta.patchId,
      ...(meta.signer ? { signer: { ...meta.signer } } : {}),
      ...(meta.checkedBy ? { checkedBy: meta.checkedBy } : {}),
      changed: [...s.entries.keys()].sort(),
    });
    for (const [id, mod] of s.newMods) {
      this.modules.set(id, mod);
      if (!mod.esm) registerInRequireCache(mod);
    }
    for (const [id, entry] of s.entries) {
      const mod = this.modules.get(id)!;
      if (!mod.versions.includes(entry)) mod.versions[entry.record.version - 1] = entry;
      mod.cur = gen.exports.get(id);
      mod.curCtl = gen.ctl.get(id);
      const plan = s.plans.get(id);
      if (plan) applyCanon(mod, plan);
      if (mod.curCtl) linkClasses(mod, mod.curCtl);
      const pending = s.pending.get(id);
      if (pending) commitKept(id, pending);
    }
    endEffects(gen);
    this.stagingGens.delete(gen);
    // Late-loaded deployed modules may have joined other generations after the copy; keep them.
    for (const [id, entry] of prev.versions) if (!gen.versions.has(id)) gen.versions.set(id, entry);
    for (const [id, e] of prev.exports) if (!gen.exports.has(id)) gen.exports.set(id, e);
    for (const [id, c] of prev.ctl) if (!gen.ctl.has(id)) gen.ctl.set(id, c);
    this.gens[gen.n - 1] = gen;
    this.live.add(gen);
    this.current = gen;
    state.staging = Math.max(0, state.staging - 1);
    this.recomputeMulti();
    const result: CommitResult = {
      generation: gen.n,
      previousGeneration: prev.n,
      changed: [...s.entries.values()].map((e) => ({ module: e.record.id, version: e.record.version, hash: e.record.hash })),
    };
    if (meta.patchId !== undefined) result.patchId = meta.patchId;
    // Listeners hear of the commit before the previous generation's drain that it may cause.
    this.notify('commit', q.summarize(gen, this.live, this.current));
    if (prev.inflight <= 0) this.drop(prev);
    return result;
  }

  async rollback(to?: number, meta: CommitMeta = {}): Promise<CommitResult> {
    const target = to ?? this.current.n - 1;
    const targetGen = Number.isInteger(target) && target >= 1 && target < this.current.n ? this.gens[target - 1] : undefined;
    if (!targetGen)
      throw new LivepatchError(
        'LP_ERR_ROLLBACK_TARGET',
        `no generation ${String(to ?? target)} to roll back to (current is ${this.current.n})`,
        { to: to ?? target },
      );
    const items = [];
    for (const [id, entry] of targetGen.versions) {
      if (this.current.versions.get(id) === entry) continue;
      items.push({ id, js: entry.js, source: entry.record.source, reuse: entry });
    }
    const s = await stageItems(this, items, {}, 'rollback');
    this.staged.set(s.staged.stageId, s);
    Object.assign(s.gen.summary, { rollbackTo: targetGen.n });
    return this.commit(s.staged, meta);
  }

  pin<T>(fn: () => T, generation?: number): T {
    const g = generation === undefined ? undefined : this.gens[generation - 1];
    return pinWith(this, fn, g && this.live.has(g) ? g : this.current);
  }

  holdRequests(until: Promise<unknown>, maxMs?: number): void {
    this.pinning.hold(until, maxMs);
  }
}

/** Let a later plain `require()` of a new module's runtime path get its facade, not a stale file. */
function registerInRequireCache(mod: LiveModule): void {
  const cache = requireCache();
  if (cache[mod.runtimeFile]) return;
  const m = new Module(mod.runtimeFile);
  m.filename = mod.runtimeFile;
  m.exports = mod.canon;
  m.loaded = true;
  cache[mod.runtimeFile] = m;
}
