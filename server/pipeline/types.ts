/**
 * The patch pipeline's contract, used by the agent: check → stage → commit, rollback, journal, drift.
 * Every method that fails throws a LivepatchError with a registry code and leaves the generation
 * unchanged. Type errors throw LP_ERR_PATCH_TYPE with `details: { diagnostics: Diagnostic[] }`.
 */
import type { CheckResult, CommitResult, DriftEntry, StageResult } from '../../shared/ops';
import type { PatchSet } from '../../shared/patch';
import type { Engine } from '../engine/types';

export interface Progress {
  step: 'check' | 'transpile' | 'load' | 'verify' | 'commit' | 'journal' | 'rollback';
  message: string;
  fraction?: number;
}

export interface OpContext {
  /** Token name (or 'journal-replay', 'local'). */
  who: string;
  onProgress?: (p: Progress) => void;
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
  loadTimeoutMs?: number;
  verifyTimeoutMs?: number;
  /** How long a staged patch set is held for commit (ms, default 60000). */
  stageTtlMs?: number;
}

export interface Pipeline {
  /** Whether patching is possible here (sources + tsconfig present); inspection works either way. */
  readonly patching: { enabled: boolean; reason?: string };
  check(patch: PatchSet, ctx: OpContext): Promise<CheckResult>;
  stage(patch: PatchSet, ctx: OpContext, ttlMs?: number): Promise<StageResult>;
  commit(stageId: string, ctx: OpContext): Promise<CommitResult>;
  abort(stageId: string, ctx: OpContext): void;
  /** check + stage + commit; with dryRun, stops before commit and discards. */
  apply(patch: PatchSet, ctx: OpContext, dryRun?: boolean): Promise<CommitResult>;
  rollback(to: number | undefined, ctx: OpContext): Promise<CommitResult>;
  drift(): DriftEntry[];
  /** Stop the checker worker; drop staged sets. */
  close(): Promise<void>;
}
