/**
 * The patch pipeline's contract, used by the agent: check → stage → commit, rollback, journal, drift.
 * Every method that fails throws a LivepatchError with a registry code and leaves the generation
 * unchanged. Type errors throw LP_ERR_PATCH_TYPE with `details: { diagnostics: Diagnostic[] }`.
 */
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
import type { Engine } from '../engine/types';
import type { CheckerLimits } from './checker-client';

export interface Progress {
  step: 'check' | 'transpile' | 'load' | 'verify' | 'commit' | 'journal' | 'rollback';
  message: string;
  fraction?: number;
}

export interface OpContext {
  /** Token name (or 'journal-replay', 'local'). */
  who: string;
  onProgress?: (p: Progress) => void;
  /**
   * The key that signed the patch set, when the agent verified one (stage, apply). It goes with the
   * staged set to the commit, the history and the journal record.
   */
  signer?: { keyId: string; name?: string };
}

export interface PipelineOptions {
  engine: Engine;
  /** Project root (tsconfig.json and TypeScript sources live here). */
  root: string;
  /** tsconfig path, default `<root>/tsconfig.json`. */
  tsconfig?: string;
  /** Journal directory; no journal when undefined. */
  journalDir?: string;
  /** Re-apply journaled patches at start (default true when journalDir is set). */
  replay?: boolean;
  /**
   * Crash-loop protection window (ms, default 60000; 0 turns it off): a host that dies this soon after
   * a patch is committed or replayed does not re-apply that patch at its next start (quarantine).
   */
  crashWindowMs?: number;
  loadTimeoutMs?: number;
  verifyTimeoutMs?: number;
  /** How long a staged patch set is held for commit (ms, default 60000). */
  stageTtlMs?: number;
  /**
   * Limits of the type-check service process (heap cap, idle stop, per-check timeout), and whether to
   * start it in the background once replay is done (`warmup`, default false).
   */
  checker?: CheckerLimits & { warmup?: boolean };
  /**
   * 'auto' (default): check here when the sources are here, else accept client-checked patches when
   * there is a build manifest. 'client': accept only client-checked patches, sources or not.
   */
  checks?: 'auto' | 'client';
}

export interface Pipeline {
  /** Whether patching is possible here (sources + tsconfig present); inspection works either way. */
  readonly patching: { enabled: boolean; reason?: string; checks?: 'host' | 'client' };
  check(patch: PatchSet, ctx: OpContext): Promise<CheckResult>;
  stage(patch: PatchSet, ctx: OpContext, ttlMs?: number): Promise<StageResult>;
  commit(stageId: string, ctx: OpContext): Promise<CommitResult>;
  abort(stageId: string, ctx: OpContext): void;
  /** check + stage + commit; with dryRun, stops before commit and discards. */
  apply(patch: PatchSet, ctx: OpContext, dryRun?: boolean): Promise<CommitResult>;
  rollback(to: number | undefined, ctx: OpContext): Promise<CommitResult>;
  drift(): DriftEntry[];
  /** Patches held back from replay by crash-loop protection (pipelines with a journal). */
  quarantined?(): QuarantinedPatch[];
  /** The journal as the last start found it (undefined without a journal). */
  journalStatus?(): JournalStatus | undefined;
  /** Drop or re-apply a quarantined patch, named by id or `#SEQ`. */
  quarantine?(args: { drop?: string; reapply?: string }, ctx: OpContext): Promise<QuarantineResult>;
  /** Resolves once replay is over with what the start did that belongs in the audit log. */
  startupEvents?(): Promise<StartupEvent[]>;
  /** Start the type-check service and build the program ahead of a check (the `warm` op). */
  warm(): WarmResult;
  /** The type-check service's state, when this host checks patches itself. */
  checkerStatus(): CheckerStatus | undefined;
  /** Stop the checker worker; drop staged sets. */
  close(): Promise<void>;
}

/** Something journal replay did or found at start, for the audit log. */
export interface StartupEvent {
  op: 'journal-replay' | 'quarantine';
  /** 'ok' or an error code. */
  outcome: string;
  patchId?: string;
  detail: string;
}
