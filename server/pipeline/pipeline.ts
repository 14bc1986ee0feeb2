/**
 * The patch pipeline: check (worker) → transpile → stage (engine, vm) → commit (engine swap) →
 * journal, plus rollback, TTL'd staged sets and drift from journal replay.
 *
 * Concurrency: one stage/commit/apply/rollback at a time. A second one arriving while one runs is
 * refused with LP_ERR_PATCH_BUSY (retryable) rather than queued, so an operator never has a patch
 * applied later than they think. `check` takes no lock: it changes nothing, and the worker serialises
 * checks itself. Every op first waits for journal replay to finish.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { LivepatchError } from '../../shared/errors';
import type { CheckResult, CommitResult, DriftEntry, StageResult } from '../../shared/ops';
import type { PatchSet } from '../../shared/patch';
import type { Engine } from '../engine/types';
import { CheckerClient } from './checker-client';
import type { CheckerResult } from './checker-protocol';
import { Journal, type JournalFile } from './journal';
import { checkBases, liveOverlay, pathOfId, sha256, validateIds } from './patch-input';
import { replayJournal } from './replay';
import { allDiagnostics, hasError, MAX_DIAGNOSTICS, progress, rejection } from './outcome';
import { StagedStore } from './staged-store';
import type { OpContext, Pipeline, PipelineOptions } from './types';

const DEFAULT_TTL_MS = 60_000;
const DEFAULT_LOAD_TIMEOUT_MS = 2_000;

/** The Pipeline implementation; construct through `createPipeline` (server/pipeline/index.ts). */
export class PatchPipeline implements Pipeline {
  /** Resolves when journal replay is over (immediately without a journal). Never rejects. */
  readonly ready: Promise<void>;
  private readonly engine: Engine;
  private readonly root: string;
  private readonly tsconfig: string;
  private readonly checker: CheckerClient;
  private readonly journal: Journal | undefined;
  private readonly staged: StagedStore;
  private readonly appliedIds = new Set<string>();
  /** Live generation → journal seq that produced it, so rollbacks can be journaled by record. */
  private readonly seqOfGeneration = new Map<number, number>();
  private driftEntries: DriftEntry[] = [];
  private busy = false;
  private closed = false;

  constructor(private readonly opts: PipelineOptions) {
    this.engine = opts.engine;
    this.root = resolve(opts.root);
    this.tsconfig = resolve(this.root, opts.tsconfig ?? 'tsconfig.json');
    this.checker = new CheckerClient({ root: this.root, tsconfig: this.tsconfig });
    this.staged = new StagedStore(this.engine);
    this.journal = opts.journalDir ? new Journal(opts.journalDir) : undefined;
    this.ready = this.startReplay();
  }

  get patching(): { enabled: boolean; reason?: string } {
    if (!existsSync(this.tsconfig)) return { enabled: false, reason: `No tsconfig at ${this.tsconfig}: the project's sources are not deployed here` };
    const ids = this.engine.moduleIds();
    if (ids.length > 0 && !ids.some((id) => existsSync(pathOfId(this.root, id)))) {
      return { enabled: false, reason: `No TypeScript sources of the live modules under ${this.root}` };
    }
    return { enabled: true };
  }

  async check(patch: PatchSet, ctx: OpContext): Promise<CheckResult> {
    await this.ready;
    this.assertPatching();
    validateIds(patch);
    checkBases(this.engine, patch);
    const started = Date.now();
    const r = await this.runChecker(patch, ctx, false);
    const diagnostics = allDiagnostics(r);
    return { ok: !hasError(diagnostics), diagnostics: diagnostics.slice(0, MAX_DIAGNOSTICS), checkedFiles: r.check.checked, durationMs: Date.now() - started };
  }

  async stage(patch: PatchSet, ctx: OpContext, ttlMs?: number): Promise<StageResult> {
    return this.exclusive(async () => {
      const timings: Record<string, number> = {};
      const { entry, diagnostics } = await this.stageLocked(patch, ctx, timings, ttlMs);
      const s = entry.staged;
      return {
        stageId: s.stageId,
        baseGeneration: s.baseGeneration,
        modules: s.changes.map((v) => ({ module: v.id, version: v.version, hash: v.hash, isNew: s.newModules.includes(v.id) })),
        diagnostics,
        expiresAt: new Date(entry.expiresAt).toISOString(),
      };
    });
  }

  async commit(stageId: string, ctx: OpContext): Promise<CommitResult> {
    return this.exclusive(() => this.commitLocked(stageId, ctx, {}));
  }

  abort(stageId: string, _ctx: OpContext): void {
    if (!this.staged.discard(stageId)) {
      throw new LivepatchError('LP_ERR_PATCH_STAGE_UNKNOWN', `No staged patch ${JSON.stringify(stageId).slice(0, 120)} (expired, committed or aborted)`);
    }
  }

  async apply(patch: PatchSet, ctx: OpContext, dryRun?: boolean): Promise<CommitResult> {
    return this.exclusive(async () => {
      const timings: Record<string, number> = {};
      const { entry } = await this.stageLocked(patch, ctx, timings);
      const s = entry.staged;
      if (dryRun) {
        this.staged.discard(s.stageId);
        const gen = this.engine.currentGeneration;
        return { generation: gen, previousGeneration: gen, changed: s.changes.map((v) => ({ module: v.id, version: v.version, hash: v.hash })), patchId: patch.id, dryRun: true, timings };
      }
      return this.commitLocked(s.stageId, ctx, timings);
    });
  }

  async rollback(to: number | undefined, ctx: OpContext): Promise<CommitResult> {
    return this.exclusive(async () => {
      progress(ctx, { step: 'rollback', message: to === undefined ? 'rolling back to the previous generation' : `rolling back to generation ${to}` });
      const started = Date.now();
      const res = await this.engine.rollback(to, { who: ctx.who, message: to === undefined ? 'rollback' : `rollback to generation ${to}` });
      const target = this.engine.history().find((g) => g.generation === res.generation)?.rollbackTo ?? to ?? res.previousGeneration - 1;
      if (this.journal) {
        progress(ctx, { step: 'journal', message: 'journaling the rollback' });
        // Generation 1 is the deploy (seq 0); a target no record produced is journaled as unknown (-1): replay skips it.
        const toSeq = this.seqOfGeneration.get(target) ?? (target === 1 ? 0 : -1);
        await this.journalOrUndo(res, () =>
          this.journal!.append({ kind: 'rollback', time: new Date().toISOString(), who: ctx.who, generation: res.generation, previousGeneration: res.previousGeneration, to: target, toSeq }),
        );
      }
      return { ...res, timings: { ...res.timings, total: Date.now() - started } };
    });
  }

  drift(): DriftEntry[] {
    return this.driftEntries.map((d) => ({ ...d }));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.staged.clear();
    await this.checker.close();
  }

  private startReplay(): Promise<void> {
    if (!this.journal || this.opts.replay === false) {
      try {
        // Read only to continue the record numbering: without replay none of its patches is live.
        this.journal?.read();
      } catch (err) {
        process.stderr.write(`livepatch: cannot read the journal: ${(err as Error)?.message ?? String(err)}\n`);
      }
      return Promise.resolve();
    }
    const journal = this.journal;
    const run = (async () => {
      // The app's modules load synchronously right after the preload that created us: wait a turn.
      await new Promise<void>((r) => setImmediate(r));
      try {
        const out = await replayJournal(this.engine, journal.read(), { loadTimeoutMs: this.opts.loadTimeoutMs });
        this.driftEntries = out.drift;
        this.rememberIds(out.patchIds);
        for (const [gen, seq] of out.seqOfGeneration) this.seqOfGeneration.set(gen, seq);
      } catch (err) {
        process.stderr.write(`livepatch: journal replay failed: ${(err as Error)?.message ?? String(err)}\n`);
      }
    })();
    this.engine.holdRequests(run);
    return run;
  }

  private rememberIds(ids: string[]): void {
    for (const id of ids) this.appliedIds.add(id);
  }

  private assertPatching(): void {
    const p = this.patching;
    if (!p.enabled) throw new LivepatchError('LP_ERR_PATCH_NO_SOURCES', p.reason);
  }

  private assertNotDuplicate(patch: PatchSet): void {
    if (patch.id === undefined) return;
    // appliedIds holds the ids committed by this process and those replayed from the journal.
    if (this.appliedIds.has(patch.id)) throw new LivepatchError('LP_ERR_PATCH_DUPLICATE', `Patch ${JSON.stringify(patch.id).slice(0, 200)} was already applied`, { patchId: patch.id });
  }

  /** Run `fn` holding the single patch lock; LP_ERR_PATCH_BUSY if it is taken. */
  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.ready;
    if (this.closed) throw new LivepatchError('LP_ERR_INTERNAL', 'The pipeline is closed');
    if (this.busy) throw new LivepatchError('LP_ERR_PATCH_BUSY');
    this.busy = true;
    try {
      return await fn();
    } finally {
      this.busy = false;
    }
  }

  /** Check the patch over the live overlay in the worker; with `transpile`, also get its JS. */
  private runChecker(patch: PatchSet, ctx: OpContext, transpile: boolean): Promise<CheckerResult> {
    const overlay = liveOverlay(this.engine, this.root);
    for (const [id, text] of Object.entries(patch.files)) overlay.set(pathOfId(this.root, id), text);
    const cold = !this.checker.started;
    progress(ctx, { step: 'check', message: cold ? 'starting the type checker (first check builds the whole program)' : 'type-checking' });
    return this.checker.run(
      { overlay: [...overlay], transpile: transpile ? Object.keys(patch.files) : [], verify: transpile ? patch.verify : undefined },
      (p) =>
        progress(ctx, {
          step: 'check',
          message: p.phase === 'program' ? `building the program (${p.total} files)` : `checked ${p.done}/${p.total} files`,
          fraction: p.total > 0 ? p.done / p.total : undefined,
        }),
    );
  }

  private async stageLocked(patch: PatchSet, ctx: OpContext, timings: Record<string, number>, ttlMs?: number) {
    this.assertPatching();
    validateIds(patch);
    this.assertNotDuplicate(patch);
    checkBases(this.engine, patch);
    const baseGeneration = this.engine.currentGeneration;
    let t = Date.now();
    const r = await this.runChecker(patch, ctx, true);
    timings.check = Date.now() - t;
    const diagnostics = allDiagnostics(r);
    const syntax = [...r.check.syntactic, ...r.transpileDiagnostics.filter((d) => d.category === 'error')];
    if (syntax.length > 0) throw rejection('LP_ERR_PATCH_SYNTAX', 'syntax error', syntax);
    if (hasError(diagnostics)) throw rejection('LP_ERR_PATCH_TYPE', 'type error', diagnostics.filter((d) => d.category === 'error'));
    // The lock keeps other patches out, but a rollback through the engine directly could have moved on.
    if (this.engine.currentGeneration !== baseGeneration) throw new LivepatchError('LP_ERR_PATCH_CONFLICT', 'The live program changed while the patch was being checked');
    checkBases(this.engine, patch);

    const files: JournalFile[] = Object.entries(patch.files).map(([module, source]) => ({
      module,
      source,
      js: r.js[module] ?? '',
      hash: sha256(source),
      base: this.engine.getVersion(module)?.hash ?? null,
    }));
    progress(ctx, { step: 'load', message: `loading ${files.length} module(s) in isolation` });
    t = Date.now();
    const staged = await this.engine.stage(
      files.map((f) => ({ id: f.module, source: f.source, js: f.js })),
      { loadTimeoutMs: this.opts.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS, verifyJs: r.verifyJs, verifyTimeoutMs: this.opts.verifyTimeoutMs },
    );
    timings.stage = Date.now() - t;
    if (patch.verify !== undefined) progress(ctx, { step: 'verify', message: 'verify hooks passed' });
    const entry = this.staged.add(staged, patch, files, ttlMs ?? this.opts.stageTtlMs ?? DEFAULT_TTL_MS);
    return { entry, diagnostics };
  }

  private async commitLocked(stageId: string, ctx: OpContext, timings: Record<string, number>): Promise<CommitResult> {
    const entry = this.staged.take(stageId);
    try {
      this.assertNotDuplicate(entry.patch);
    } catch (err) {
      this.engine.discard(entry.staged);
      throw err;
    }
    progress(ctx, { step: 'commit', message: 'swapping to the new generation' });
    let t = Date.now();
    let res: CommitResult;
    try {
      res = this.engine.commit(entry.staged, { who: ctx.who, message: entry.patch.message, patchId: entry.patch.id });
    } catch (err) {
      this.engine.discard(entry.staged);
      throw err;
    }
    timings.commit = Date.now() - t;
    if (this.journal) {
      progress(ctx, { step: 'journal', message: 'journaling the patch set' });
      t = Date.now();
      const rec = await this.journalOrUndo(res, () =>
        this.journal!.append({
          kind: 'patch',
          time: new Date().toISOString(),
          who: ctx.who,
          patchId: entry.patch.id,
          message: entry.patch.message,
          generation: res.generation,
          previousGeneration: res.previousGeneration,
          files: entry.files,
        }),
      );
      this.seqOfGeneration.set(res.generation, rec.seq);
      timings.journal = Date.now() - t;
    }
    // Only now: a commit undone because its journal write failed may be sent again.
    if (entry.patch.id !== undefined) this.appliedIds.add(entry.patch.id);
    return { ...res, patchId: entry.patch.id, timings: { ...res.timings, ...timings } };
  }

  /**
   * A commit that cannot be journaled would silently vanish at the next restart: undo it (roll back
   * to the generation it replaced) and report the failure instead.
   */
  private async journalOrUndo<T>(res: CommitResult, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      process.stderr.write(`livepatch: journal write failed: ${(err as Error)?.message}\n`);
      try {
        await this.engine.rollback(res.previousGeneration, { who: 'livepatch', message: 'undo: journal write failed' });
      } catch {
        // Nothing more can be done; the message below says so.
      }
      throw new LivepatchError('LP_ERR_INTERNAL', 'The journal could not be written; the change was undone');
    }
  }
}
