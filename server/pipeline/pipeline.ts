/**
 * The patch pipeline: check (worker) → transpile → stage (engine, vm) → commit (engine swap) →
 * journal, plus rollback, TTL'd staged sets and drift from journal replay.
 *
 * Concurrency: one stage/commit/apply/rollback at a time. A second one arriving while one runs is
 * refused with LP_ERR_PATCH_BUSY (retryable) rather than queued, so an operator never has a patch
 * applied later than they think. `check` takes no lock: it changes nothing, and the worker serialises
 * checks itself. Every op first waits for journal replay to finish.
 *
 * Crash-loop protection (crash-guard.ts): the newest live patch is on probation for a window after it
 * is committed or replayed; if the host dies inside it, the next start quarantines that patch (a
 * `quarantine` journal record) and replays the rest. Quarantined patches are listed in status and
 * history and leave quarantine by `quarantine` (drop, or re-apply through the whole pipeline).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LivepatchError } from '../../shared/errors';
import type {
  CheckerStatus,
  CheckResult,
  CommitResult,
  DriftEntry,
  JournalStatus,
  QuarantinedPatch,
  QuarantineResult,
  StageResult,
  WarmResult,
} from '../../shared/ops';
import type { PatchSet } from '../../shared/patch';
import { isInsidePath, readManifest, type BuildManifest } from '../../shared/manifest';
import { isEsModuleFile } from '../../shared/module-format';
import type { Engine } from '../engine/types';
import { acquireChecker, checkerStateFile, type CheckerClient, type CheckerLease } from './checker-client';
import type { CheckerResult } from './checker-protocol';
import { CrashGuard, DEFAULT_CRASH_WINDOW_MS, type Probation } from './crash-guard';
import { Journal, type JournalFile, type JournalProblem, type JournalRecord, type PatchRecord } from './journal';
import { sha256 } from '../../shared/hash';
import { checkBases, checkClientCompiled, liveOverlay, pathOfId, validateIds } from './patch-input';
import { replayJournal } from './replay';
import { allDiagnostics, hasError, MAX_DIAGNOSTICS, progress, rejection } from './outcome';
import { StagedStore } from './staged-store';
import type { OpContext, Pipeline, PipelineOptions, StartupEvent } from './types';

const DEFAULT_TTL_MS = 60_000;
const DEFAULT_LOAD_TIMEOUT_MS = 2_000;
/** Largest source hashed from disk when a client's check names a module not loaded (the wire's source limit). */
const MAX_SOURCE_BYTES = 16 * 1024 * 1024;
/** Most sources read from disk to verify one client's check (bounds the synchronous work one op can cause). */
const MAX_DISK_VERIFY = 10_000;

/** The Pipeline implementation; construct through `createPipeline` (server/pipeline/index.ts). */
export class PatchPipeline implements Pipeline {
  /** Resolves when journal replay is over (immediately without a journal). Never rejects. */
  readonly ready: Promise<void>;
  private readonly engine: Engine;
  private readonly root: string;
  private readonly tsconfig: string;
  /** A warm-up (LIVEPATCH_CHECKER_WARMUP or the `warm` op) waiting for replay to end before it starts the service. */
  private warming: Promise<void> | undefined;
  private readonly checker: CheckerClient;
  private readonly checkerLease: CheckerLease;
  private readonly journal: Journal | undefined;
  private readonly staged: StagedStore;
  private readonly appliedIds = new Set<string>();
  /** Live generation → journal seq that produced it, so rollbacks can be journaled by record. */
  private readonly seqOfGeneration = new Map<number, number>();
  private driftEntries: DriftEntry[] = [];
  private readonly guard: CrashGuard | undefined;
  /** Quarantined patch records by seq, with what status shows of them. */
  private readonly quarantinedBySeq = new Map<number, { rec: PatchRecord; info: QuarantinedPatch }>();
  private journalInfo: { records: number; unreadable: JournalProblem[] } = { records: 0, unreadable: [] };
  private readonly events: StartupEvent[] = [];
  private busy = false;
  private closed = false;
  /** The build manifest in the root: without sources here, it enables patches checked on a client. */
  private readonly manifest: BuildManifest | undefined;

  constructor(private readonly opts: PipelineOptions) {
    this.engine = opts.engine;
    this.root = resolve(opts.root);
    this.tsconfig = resolve(this.root, opts.tsconfig ?? 'tsconfig.json');
    // The same service the REPL checks its input with (one program on the machine, not two).
    const stateDir = opts.checker?.stateDir ?? opts.journalDir ?? join(this.root, '.livepatch');
    const stateFile = stateDir === false ? undefined : checkerStateFile(resolve(this.root, stateDir), this.tsconfig);
    this.checkerLease = acquireChecker({ root: this.root, tsconfig: this.tsconfig, ...(stateFile ? { stateFile } : {}) }, opts.checker);
    this.checker = this.checkerLease.client;
    this.staged = new StagedStore(this.engine);
    this.journal = opts.journalDir ? new Journal(opts.journalDir) : undefined;
    this.guard = opts.journalDir ? new CrashGuard(opts.journalDir, opts.crashWindowMs ?? DEFAULT_CRASH_WINDOW_MS) : undefined;
    this.manifest = readManifest(this.root);
    this.ready = this.startReplay();
    if (opts.checker?.warmup) this.startWarmUp();
  }

  /**
   * Build the program in the type-check service ahead of the first patch (LIVEPATCH_CHECKER_WARMUP):
   * the check of the live program as it is, whose answer is dropped. It also writes the checker's
   * persisted state, so a later cold start begins from it. Skipped when this host does not check.
   */
  private warmUp(): void {
    if (this.closed || this.patching.checks !== 'host') return;
    const failed = (err: unknown) => {
      if (!this.closed) process.stderr.write(`livepatch: checker warm-up failed: ${(err as Error)?.message ?? String(err)}\n`);
    };
    try {
      this.checker.run({ overlay: [...liveOverlay(this.engine, this.root)], transpile: [] }).then(() => undefined, failed);
    } catch (err) {
      // Never out of here: it runs from a promise nobody awaits, in the host.
      failed(err);
    }
  }

  /**
   * The `warm` op: start building the program now (the same warm-up as LIVEPATCH_CHECKER_WARMUP), so
   * the check an operator is about to ask for is a warm one. Does nothing when the service is already
   * running or this host does not check.
   */
  warm(): WarmResult {
    this.assertPatching();
    const checker = this.checkerStatus();
    if (!checker) return { started: false, reason: 'this host does not type-check patches: they are checked on the client' };
    if (checker.state !== 'stopped') return { started: false, reason: `the type checker is already running (${checker.state})`, checker };
    // Until replay is over the service is not started yet: a second warm meanwhile finds this.
    if (this.warming) return { started: false, reason: 'the type checker is already starting', checker };
    this.startWarmUp();
    return { started: true, checker: { ...checker, state: 'busy' } };
  }

  /** Warm up once replay is over; one at a time, whether asked at start or by the `warm` op. */
  private startWarmUp(): void {
    this.warming ??= this.ready.then(() => this.warmUp()).finally(() => (this.warming = undefined));
  }

  /** The type-check service's state, when this host checks patches itself. */
  checkerStatus(): CheckerStatus | undefined {
    return this.patching.checks === 'host' ? this.checker.status : undefined;
  }

  get patching(): { enabled: boolean; reason?: string; checks?: 'host' | 'client' } {
    if (this.opts.checks === 'client') return { enabled: true, checks: 'client' };
    const missing = this.missingSources();
    if (missing === undefined) return { enabled: true, checks: 'host' };
    // A build manifest but no sources: the host cannot check, a client that proves what it checked against can.
    if (this.manifest) return { enabled: true, checks: 'client' };
    return { enabled: false, reason: missing };
  }

  /** Why this host cannot type-check patches itself (undefined when it can). */
  private missingSources(): string | undefined {
    if (!existsSync(this.tsconfig)) return `No tsconfig at ${this.tsconfig}: the project's sources are not deployed here`;
    const ids = this.engine.moduleIds();
    if (ids.length > 0 && !ids.some((id) => existsSync(pathOfId(this.root, id)))) {
      return `No TypeScript sources of the live modules under ${this.root}`;
    }
    return undefined;
  }

  /**
   * Whether this patch's check is the client's: on a host without sources (build manifest only), a
   * set carrying `compiled` whose hashes match what runs here; without `compiled` it is refused. A host
   * with sources checks every patch itself and ignores `compiled`.
   */
  private clientChecked(patch: PatchSet): boolean {
    const p = this.patching;
    if (p.checks !== 'client') return false;
    if (!patch.compiled) {
      throw new LivepatchError(
        'LP_ERR_PATCH_NO_SOURCES',
        this.opts.checks === 'client'
          ? 'This agent accepts only patches type-checked on the client (LIVEPATCH_CHECKS=client): send it with --check-here'
          : 'This host has no TypeScript sources (it runs from its build manifest): type-check the patch on the client with --check-here',
        { checks: 'client' },
      );
    }
    return true;
  }

  /**
   * The hash of a deployed module that is not live: the build manifest's, else its source's here (if
   * any; at most MAX_DISK_VERIFY reads per op, counted in `budget`, else LP_ERR_OP_BAD_ARGS).
   */
  private deployedHash(id: string, budget: { reads: number }): string | undefined {
    if (!isInsidePath(id) || !/\.(ts|tsx|mts|cts)$/.test(id) || id.split('/').includes('node_modules')) return undefined;
    const listed = Object.prototype.hasOwnProperty.call(this.manifest?.modules ?? {}, id) ? this.manifest!.modules[id]!.hash : undefined;
    if (listed !== undefined) return listed;
    if (++budget.reads > MAX_DISK_VERIFY)
      throw new LivepatchError(
        'LP_ERR_OP_BAD_ARGS',
        `compiled.against names more than ${MAX_DISK_VERIFY} modules that are neither live nor in a build manifest`,
      );
    // Only plain module paths inside the root are ever read (never a file a client names elsewhere).
    const file = pathOfId(this.root, id);
    try {
      if (statSync(file).size > MAX_SOURCE_BYTES) return undefined;
      return sha256(readFileSync(file, 'utf8'));
    } catch {
      return undefined;
    }
  }

  /** The client's check in the shape of the host checker's result, after its hashes are verified. */
  private clientResult(patch: PatchSet): CheckerResult {
    const budget = { reads: 0 };
    const compiled = checkClientCompiled(this.engine, patch, (id) => this.deployedHash(id, budget));
    return {
      id: 0,
      type: 'result',
      check: { diagnostics: [], syntactic: [], hasErrors: false, files: 0, checked: 0, durationMs: 0 },
      js: { ...compiled.js },
      ...(compiled.verifyJs !== undefined ? { verifyJs: compiled.verifyJs } : {}),
      transpileDiagnostics: [],
    };
  }

  async check(patch: PatchSet, ctx: OpContext): Promise<CheckResult> {
    await this.ready;
    this.assertPatching();
    validateIds(patch);
    checkBases(this.engine, patch);
    const started = Date.now();
    const byClient = this.clientChecked(patch);
    // Transpiled too: the engine's static verdict (unreachable changes, top-level effects) is part of
    // the check, so `check` and `apply --dry-run` agree. A client's JS gets the same verdict here.
    const r = byClient ? this.clientResult(patch) : await this.runChecker(patch, ctx, true);
    const diagnostics = allDiagnostics(r);
    if (!hasError(diagnostics) && this.engine.verdict) {
      try {
        diagnostics.push(...this.engine.verdict(Object.entries(patch.files).map(([id, source]) => ({ id, js: r.js[id] ?? '', source }))));
      } catch (err) {
        if (!(err instanceof LivepatchError) || err.code !== 'LP_ERR_PATCH_SYNTAX') throw err;
        diagnostics.push({
          file: (err.details as { module?: string } | undefined)?.module,
          code: 0,
          lpCode: err.code,
          category: 'error',
          message: err.message,
        });
      }
    }
    return {
      ok: !hasError(diagnostics),
      diagnostics: diagnostics.slice(0, MAX_DIAGNOSTICS),
      checkedFiles: r.check.checked,
      durationMs: Date.now() - started,
      checkedBy: byClient ? 'client' : 'host',
    };
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
        checkedBy: entry.checkedBy ?? 'host',
      };
    });
  }

  async commit(stageId: string, ctx: OpContext): Promise<CommitResult> {
    return this.exclusive(() => this.commitLocked(stageId, ctx, {}));
  }

  quarantined(): QuarantinedPatch[] {
    return [...this.quarantinedBySeq.values()].map((q) => ({ ...q.info, modules: [...q.info.modules] }));
  }

  journalStatus(): JournalStatus | undefined {
    if (!this.journal) return undefined;
    const p = this.guard?.probation;
    return {
      dir: this.journal.dir,
      replay: this.opts.replay !== false,
      records: this.journalInfo.records,
      unreadable: this.journalInfo.unreadable.map((u) => ({ ...u })),
      ...(p
        ? {
            probation: {
              seq: p.seq,
              ...(p.patchId !== undefined ? { patchId: p.patchId } : {}),
              until: new Date(Date.parse(p.since) + p.windowMs).toISOString(),
            },
          }
        : {}),
    };
  }

  async startupEvents(): Promise<StartupEvent[]> {
    await this.ready;
    return this.events.map((e) => ({ ...e }));
  }

  async quarantine(args: { drop?: string; reapply?: string }, ctx: OpContext): Promise<QuarantineResult> {
    if ((args.drop === undefined) === (args.reapply === undefined))
      throw new LivepatchError('LP_ERR_OP_BAD_ARGS', 'Give exactly one of drop and reapply');
    return this.exclusive(async () => {
      const name = (args.drop ?? args.reapply)!;
      const entry = this.findQuarantined(name);
      if (args.drop !== undefined) {
        await this.appendOrFail({ kind: 'drop', time: new Date().toISOString(), who: ctx.who, target: entry.rec.seq });
        this.quarantinedBySeq.delete(entry.rec.seq);
        return { patch: entry.info, action: 'dropped', quarantined: this.quarantined() };
      }
      const rec = entry.rec;
      const base: Record<string, string> = {};
      for (const f of rec.files) if (f.base !== null) base[f.module] = f.base;
      const patch: PatchSet = {
        ...(rec.patchId !== undefined ? { id: rec.patchId } : {}),
        ...(rec.message !== undefined ? { message: rec.message } : {}),
        files: Object.fromEntries(rec.files.map((f) => [f.module, f.source])),
        base,
      };
      const timings: Record<string, number> = {};
      // Code this agent accepted before (like a rollback): it keeps the signer it was committed with.
      const { entry: staged } = await this.stageLocked(
        patch,
        { ...ctx, ...(rec.signer ? { signer: rec.signer } : {}) },
        timings,
        undefined,
        rec.seq,
      );
      const commit = await this.commitLocked(staged.staged.stageId, ctx, timings, rec.seq);
      this.quarantinedBySeq.delete(rec.seq);
      return { patch: entry.info, action: 'reapplied', commit, quarantined: this.quarantined() };
    });
  }

  abort(stageId: string, _ctx: OpContext): void {
    if (!this.staged.discard(stageId)) {
      throw new LivepatchError(
        'LP_ERR_PATCH_STAGE_UNKNOWN',
        `No staged patch ${JSON.stringify(stageId).slice(0, 120)} (expired, committed or aborted)`,
      );
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
        return {
          generation: gen,
          previousGeneration: gen,
          changed: s.changes.map((v) => ({ module: v.id, version: v.version, hash: v.hash })),
          patchId: patch.id,
          dryRun: true,
          timings,
          checkedBy: entry.checkedBy ?? 'host',
        };
      }
      return this.commitLocked(s.stageId, ctx, timings);
    });
  }

  async rollback(to: number | undefined, ctx: OpContext): Promise<CommitResult> {
    return this.exclusive(async () => {
      progress(ctx, {
        step: 'rollback',
        message: to === undefined ? 'rolling back to the previous generation' : `rolling back to generation ${to}`,
      });
      const started = Date.now();
      const res = await this.engine.rollback(to, { who: ctx.who, message: to === undefined ? 'rollback' : `rollback to generation ${to}` });
      const target = this.engine.history().find((g) => g.generation === res.generation)?.rollbackTo ?? to ?? res.previousGeneration - 1;
      if (this.journal) {
        progress(ctx, { step: 'journal', message: 'journaling the rollback' });
        // Generation 1 is the deploy (seq 0); a target no record produced is journaled as unknown (-1): replay skips it.
        const toSeq = this.seqOfGeneration.get(target) ?? (target === 1 ? 0 : -1);
        await this.journalOrUndo(res, () =>
          this.journal!.append({
            kind: 'rollback',
            time: new Date().toISOString(),
            who: ctx.who,
            generation: res.generation,
            previousGeneration: res.previousGeneration,
            to: target,
            toSeq,
          }),
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
    this.guard?.close();
    this.staged.clear();
    await this.checkerLease.release();
  }

  private startReplay(): Promise<void> {
    if (!this.journal) return Promise.resolve();
    const replay = this.opts.replay !== false;
    const run = (async () => {
      // The app's modules load synchronously right after the preload that created us: wait a turn.
      if (replay) await new Promise<void>((r) => setImmediate(r));
      try {
        await this.replayOnce(this.journal!, replay);
      } catch (err) {
        process.stderr.write(`livepatch: journal replay failed: ${(err as Error)?.message ?? String(err)}\n`);
      }
    })();
    if (replay) this.engine.holdRequests(run);
    return run;
  }

  /** Read the journal, settle the previous host's probation, replay (unless off), start probation. */
  private async replayOnce(journal: Journal, replay: boolean): Promise<void> {
    const log = (line: string) => process.stderr.write(`livepatch: ${line}\n`);
    const { records, problems } = journal.read();
    this.journalInfo = { records: records.length, unreadable: problems };
    for (const p of problems)
      log(`journal ${journal.file}: line ${p.line} (offset ${p.offset}, ${p.bytes} bytes) not replayed: ${p.reason}`);
    if (problems.length > 0) {
      const detail = problems.map((p) => `line ${p.line} (offset ${p.offset}, ${p.bytes} bytes): ${p.reason}`).join('; ');
      this.events.push({
        op: 'journal-replay',
        outcome: 'LP_ERR_JOURNAL_UNREADABLE',
        detail: `${problems.length} unreadable line(s) in ${journal.file}: ${detail}`.slice(0, 4000),
      });
    }
    const { patches, dropped } = this.loadQuarantine(records);
    const carry = await this.settleProbation(journal, patches, dropped, this.guard?.previous());
    const skip = new Set<number>([...dropped, ...this.quarantinedBySeq.keys()]);

    if (!replay) {
      this.guard?.disarm();
      const n = records.filter((r) => r.kind === 'patch' || r.kind === 'rollback').length;
      log(`journal replay is off (LIVEPATCH_REPLAY=off): ${n} journaled patch/rollback record(s) not applied`);
      if (n > 0) this.events.push({ op: 'journal-replay', outcome: 'ok', detail: `replay off: ${n} journaled record(s) not applied` });
      return;
    }
    const isEsm = (id: string): boolean => isEsModuleFile(pathOfId(this.root, id));
    const out = await replayJournal(this.engine, records, { loadTimeoutMs: this.opts.loadTimeoutMs, quarantined: skip, isEsm });
    this.driftEntries = out.drift;
    this.rememberIds(out.patchIds);
    for (const [gen, seq] of out.seqOfGeneration) this.seqOfGeneration.set(gen, seq);
    if (out.applied + out.skipped > 0) {
      const q = this.quarantinedBySeq.size;
      this.events.push({
        op: 'journal-replay',
        outcome: 'ok',
        detail: `${out.applied} applied, ${out.skipped} skipped, ${out.drift.length} drifted module(s)${q ? `, ${q} quarantined patch(es) not applied` : ''}`,
      });
    }
    // The newest live patch goes on probation again: a host that dies soon after replay stops replaying it.
    if (carry !== 'keep') {
      const head = this.patchBehind(records, this.seqOfGeneration.get(this.engine.currentGeneration) ?? 0);
      if (head) this.guard?.arm(head.seq, head.patchId, carry?.seq === head.seq ? carry.strikes : 0);
      else this.guard?.disarm();
    }
  }

  /**
   * Quarantine state from the records: quarantined minus dropped or re-applied. `dropped` holds the patch
   * records never to replay: dropped ones, and quarantined ones re-applied since (the re-apply's own
   * record is the live one).
   */
  private loadQuarantine(records: JournalRecord[]): { patches: Map<number, PatchRecord>; dropped: Set<number> } {
    const patches = new Map<number, PatchRecord>();
    const dropped = new Set<number>();
    for (const rec of records) {
      if (rec.kind === 'patch') {
        patches.set(rec.seq, rec);
        if (rec.reapplies !== undefined) {
          dropped.add(rec.reapplies);
          this.quarantinedBySeq.delete(rec.reapplies);
        }
      } else if (rec.kind === 'quarantine') {
        const p = patches.get(rec.target);
        if (p) this.quarantinedBySeq.set(p.seq, { rec: p, info: quarantineInfo(p, rec.time, rec.reason) });
      } else if (rec.kind === 'drop') {
        dropped.add(rec.target);
        this.quarantinedBySeq.delete(rec.target);
      }
    }
    return { patches, dropped };
  }

  /**
   * The previous host left a probation marker: it died inside the window. A recorded crash, or a
   * second death without a trace, quarantines the patch; a first death without a trace is carried as
   * a strike. 'keep' = the quarantine could not be journaled: the marker stays for the next start.
   */
  private async settleProbation(
    journal: Journal,
    patches: Map<number, PatchRecord>,
    dropped: Set<number>,
    prev: Probation | undefined,
  ): Promise<{ seq: number; strikes: number } | 'keep' | undefined> {
    if (!prev) return undefined;
    const rec = patches.get(prev.seq);
    if (!rec || dropped.has(rec.seq) || this.quarantinedBySeq.has(rec.seq)) return undefined;
    const name = rec.patchId ?? `#${rec.seq}`;
    const windowS = Math.round(prev.windowMs / 1000);
    if (!prev.crash && prev.strikes < 1) {
      process.stderr.write(
        `livepatch: the previous run ended without exiting (killed by a signal?) within ${windowS} s of applying patch ${name}; it is re-applied, and quarantined if this happens again\n`,
      );
      return { seq: rec.seq, strikes: prev.strikes + 1 };
    }
    const after = prev.crash ? Math.max(0, Date.parse(prev.crash.at) - Date.parse(prev.since)) : undefined;
    const reason = prev.crash
      ? `the host exited with code ${prev.crash.exitCode} ${after !== undefined ? `${(after / 1000).toFixed(1)} s ` : ''}after the patch was applied${prev.crash.error ? ` (${prev.crash.error})` : ''}`
      : `the host ended without exiting (killed by a signal?) twice within ${windowS} s of applying the patch`;
    const time = new Date().toISOString();
    this.quarantinedBySeq.set(rec.seq, { rec, info: quarantineInfo(rec, time, reason) });
    process.stderr.write(
      `livepatch: patch ${name} quarantined, not re-applied: ${reason}. Re-apply or drop it with: livepatch quarantine HOST --reapply ${name} | --drop ${name}\n`,
    );
    this.events.push({
      op: 'quarantine',
      outcome: 'LP_ERR_PATCH_QUARANTINED',
      ...(rec.patchId !== undefined ? { patchId: rec.patchId } : {}),
      detail: `patch ${name} (journal record #${rec.seq}) quarantined: ${reason}`,
    });
    try {
      await journal.append({ kind: 'quarantine', time, who: 'livepatch', target: rec.seq, reason });
      return undefined;
    } catch (err) {
      process.stderr.write(
        `livepatch: cannot journal the quarantine (${(err as Error)?.message}); it holds for this run only, and the next start decides again\n`,
      );
      return 'keep';
    }
  }

  /** The patch record behind journal record `seq`, following rollbacks to their targets. */
  private patchBehind(records: JournalRecord[], seq: number): PatchRecord | undefined {
    const bySeq = new Map(records.map((r) => [r.seq, r]));
    for (let i = 0; i < 10_000 && seq > 0; i++) {
      const r = bySeq.get(seq);
      if (!r) return undefined;
      if (r.kind === 'patch') return r;
      if (r.kind !== 'rollback') return undefined;
      seq = r.toSeq;
    }
    return undefined;
  }

  private findQuarantined(name: string): { rec: PatchRecord; info: QuarantinedPatch } {
    const bySeq = /^#(\d+)$/.exec(name);
    const all = [...this.quarantinedBySeq.values()].reverse();
    const hit = bySeq ? all.find((q) => q.rec.seq === Number(bySeq[1])) : all.find((q) => q.rec.patchId === name);
    if (!hit) {
      const listed = all.map((q) => q.rec.patchId ?? `#${q.rec.seq}`).join(', ') || 'none';
      throw new LivepatchError(
        'LP_ERR_QUARANTINE_UNKNOWN',
        `No quarantined patch ${JSON.stringify(name).slice(0, 200)} (quarantined: ${listed.slice(0, 1000)})`,
      );
    }
    return hit;
  }

  /** Append a record outside a commit; a failure changes nothing and is reported. */
  private async appendOrFail(rec: Parameters<Journal['append']>[0]): Promise<void> {
    if (!this.journal) throw new LivepatchError('LP_ERR_QUARANTINE_UNKNOWN', 'This agent has no journal: nothing is quarantined');
    try {
      await this.journal.append(rec);
    } catch (err) {
      process.stderr.write(`livepatch: journal write failed: ${(err as Error)?.message}\n`);
      throw new LivepatchError('LP_ERR_INTERNAL', 'The journal could not be written; nothing was changed');
    }
  }

  private rememberIds(ids: string[]): void {
    for (const id of ids) this.appliedIds.add(id);
  }

  private assertPatching(): void {
    const p = this.patching;
    if (!p.enabled) throw new LivepatchError('LP_ERR_PATCH_NO_SOURCES', p.reason);
  }

  private assertNotDuplicate(patch: PatchSet, reapplies?: number): void {
    if (patch.id === undefined) return;
    const q = [...this.quarantinedBySeq.values()].find((e) => e.rec.patchId === patch.id);
    if (q && q.rec.seq !== reapplies) {
      throw new LivepatchError(
        'LP_ERR_PATCH_QUARANTINED',
        `Patch ${JSON.stringify(patch.id).slice(0, 200)} is quarantined (${q.info.reason}): re-apply it with livepatch quarantine HOST --reapply, or drop it first`,
        { patchId: patch.id },
      );
    }
    // appliedIds holds the ids committed by this process and those replayed from the journal.
    if (this.appliedIds.has(patch.id))
      throw new LivepatchError('LP_ERR_PATCH_DUPLICATE', `Patch ${JSON.stringify(patch.id).slice(0, 200)} was already applied`, {
        patchId: patch.id,
      });
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

  private async stageLocked(patch: PatchSet, ctx: OpContext, timings: Record<string, number>, ttlMs?: number, reapplies?: number) {
    this.assertPatching();
    validateIds(patch);
    this.assertNotDuplicate(patch, reapplies);
    checkBases(this.engine, patch);
    const baseGeneration = this.engine.currentGeneration;
    let t = Date.now();
    const byClient = this.clientChecked(patch);
    if (byClient) progress(ctx, { step: 'check', message: 'checked on the client: verifying the hashes it checked against' });
    const r = byClient ? this.clientResult(patch) : await this.runChecker(patch, ctx, true);
    timings.check = Date.now() - t;
    const diagnostics = allDiagnostics(r);
    const syntax = [...r.check.syntactic, ...r.transpileDiagnostics.filter((d) => d.category === 'error')];
    if (syntax.length > 0) throw rejection('LP_ERR_PATCH_SYNTAX', 'syntax error', syntax);
    if (hasError(diagnostics))
      throw rejection(
        'LP_ERR_PATCH_TYPE',
        'type error',
        diagnostics.filter((d) => d.category === 'error'),
      );
    // The lock keeps other patches out, but a rollback through the engine directly could have moved on.
    if (this.engine.currentGeneration !== baseGeneration)
      throw new LivepatchError('LP_ERR_PATCH_CONFLICT', 'The live program changed while the patch was being checked');
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
      {
        loadTimeoutMs: this.opts.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS,
        verifyJs: r.verifyJs,
        verifyTimeoutMs: this.opts.verifyTimeoutMs,
      },
    );
    timings.stage = Date.now() - t;
    if (patch.verify !== undefined) progress(ctx, { step: 'verify', message: 'verify hooks passed' });
    const entry = this.staged.add(staged, patch, files, ttlMs ?? this.opts.stageTtlMs ?? DEFAULT_TTL_MS);
    if (ctx.signer) entry.signer = { ...ctx.signer };
    entry.checkedBy = byClient ? 'client' : 'host';
    return { entry, diagnostics };
  }

  private async commitLocked(stageId: string, ctx: OpContext, timings: Record<string, number>, reapplies?: number): Promise<CommitResult> {
    const entry = this.staged.take(stageId);
    try {
      this.assertNotDuplicate(entry.patch, reapplies);
    } catch (err) {
      this.engine.discard(entry.staged);
      throw err;
    }
    progress(ctx, { step: 'commit', message: 'swapping to the new generation' });
    let t = Date.now();
    let res: CommitResult;
    try {
      res = this.engine.commit(entry.staged, {
        who: ctx.who,
        message: entry.patch.message,
        patchId: entry.patch.id,
        ...(entry.signer ? { signer: entry.signer } : {}),
        ...(entry.checkedBy ? { checkedBy: entry.checkedBy } : {}),
      });
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
          ...(entry.signer ? { signer: entry.signer } : {}),
          ...(entry.checkedBy ? { checkedBy: entry.checkedBy } : {}),
          ...(reapplies !== undefined ? { reapplies } : {}),
        }),
      );
      this.seqOfGeneration.set(res.generation, rec.seq);
      timings.journal = Date.now() - t;
      // Probation: if the host dies within the window, the next start does not re-apply this patch.
      this.guard?.arm(rec.seq, entry.patch.id);
    }
    // Only now: a commit undone because its journal write failed may be sent again.
    if (entry.patch.id !== undefined) this.appliedIds.add(entry.patch.id);
    return {
      ...res,
      patchId: entry.patch.id,
      timings: { ...res.timings, ...timings },
      ...(entry.checkedBy ? { checkedBy: entry.checkedBy } : {}),
    };
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

function quarantineInfo(rec: PatchRecord, quarantinedAt: string, reason: string): QuarantinedPatch {
  return {
    seq: rec.seq,
    ...(rec.patchId !== undefined ? { patchId: rec.patchId } : {}),
    ...(rec.message !== undefined ? { message: rec.message } : {}),
    who: rec.who,
    committedAt: rec.time,
    quarantinedAt,
    reason,
    modules: rec.files.map((f) => f.module),
  };
}
