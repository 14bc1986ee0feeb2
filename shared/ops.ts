/**
 * The op catalogue: every op the agent answers, the least role it needs, its argument schema and a
 * one-line doc. The agent dispatches from this table, `describe` returns it, and docs/protocol.md
 * lists it. Result shapes are the TypeScript interfaces below (the agent is trusted for results;
 * everything the agent receives is validated).
 */
import { z } from 'zod';
import type { Role } from './auth';
import type { Diagnostic, GenerationSummary, ModuleVersionInfo, PatchSet } from './patch';
import { watchArgsSchema, type GenerationHealth, type WatchResult, type WatchStatus } from './health';

const moduleId = z.string().min(1).max(1024);
const source = z.string().max(16 * 1024 * 1024);

export const patchSetSchema: z.ZodType<PatchSet> = z
  .object({
    id: z.string().min(1).max(200).optional(),
    message: z.string().max(4000).optional(),
    files: z.record(moduleId, source).refine((f) => Object.keys(f).length > 0 && Object.keys(f).length <= 2000, {
      message: 'files must name between 1 and 2000 modules',
    }),
    base: z.record(moduleId, z.string().regex(/^[0-9a-f]{64}$/)).optional(),
    verify: source.optional(),
    signature: z
      .object({
        alg: z.literal('ed25519'),
        keyId: z.string().regex(/^[0-9a-f]{16}$/),
        value: z.string().regex(/^[A-Za-z0-9+/]{86}==$/),
        format: z.literal('livepatch-patch-set/2').optional(),
      })
      .strict()
      .optional(),
    compiled: z
      .object({
        js: z.record(moduleId, source).refine((f) => Object.keys(f).length <= 2000, { message: 'compiled.js names at most 2000 modules' }),
        verifyJs: source.optional(),
        against: z
          .record(moduleId, z.string().regex(/^[0-9a-f]{64}$/))
          .refine((f) => Object.keys(f).length <= 100_000, { message: 'compiled.against names at most 100000 modules' })
          .optional(),
        typescript: z.string().max(100).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const empty = z.object({}).strict();
const generation = z.number().int().min(1);
const stageId = z.string().min(1).max(100);

/**
 * One op's entry in the catalogue: everything that differs per op lives here, and the agent, the
 * client and docs/protocol.md's table read it from here.
 */
export interface OpSpec {
  /** The least role that may run it (read < patch < admin). */
  role: Role;
  /**
   * Whether every outcome is recorded in the audit log. False only for pure reads a TUI polls: those
   * are recorded when denied or when they fail inside the agent (LP_ERR_INTERNAL), not otherwise.
   */
  audited: boolean;
  /** Whether a client waits up to 10 minutes for the reply (type check, load, verify) instead of its request timeout. */
  slow: boolean;
  args: z.ZodTypeAny;
  doc: string;
}

/** How long a client waits for the reply to a `slow` op. */
export const SLOW_OP_TIMEOUT_MS = 600_000;

export const OPS = {
  describe: { role: 'read', audited: false, slow: false, args: empty, doc: 'Protocol and agent version, and this catalogue.' },
  status: {
    role: 'read',
    audited: false,
    slow: false,
    args: empty,
    doc: 'Pid, uptime, current and live generations with in-flight counts, modules, drift, the type-check service (on a host that checks); with a journal: replay, unreadable lines, quarantined patches.',
  },
  versions: {
    role: 'read',
    audited: false,
    slow: false,
    args: z.object({ generation: generation.optional() }).strict(),
    doc: "One row per live module: version, generation that introduced it, hash, patched, and the listed generation's health.",
  },
  source: {
    role: 'read',
    audited: false,
    slow: false,
    args: z.object({ module: moduleId, generation: generation.optional() }).strict(),
    doc: 'TypeScript source of a module at a generation (default: current).',
  },
  exports: {
    role: 'read',
    audited: false,
    slow: false,
    args: z.object({ module: moduleId }).strict(),
    doc: "Names and kinds of a module's exports at the current generation.",
  },
  history: {
    role: 'read',
    audited: false,
    slow: false,
    args: z.object({ limit: z.number().int().min(1).max(10000).optional() }).strict(),
    doc: 'Generations: who, when, message, modules changed; quarantined patches.',
  },
  subscribe: {
    role: 'read',
    audited: false,
    slow: false,
    args: empty,
    doc: 'Receive events (commits, rollbacks, drains, watch verdicts) on this connection.',
  },
  health: {
    role: 'read',
    audited: false,
    slow: false,
    args: empty,
    doc: 'Per live generation: requests, status classes, failures, uncaught exceptions, rejections, p50/p99; the watch in progress.',
  },
  check: {
    role: 'patch',
    audited: true,
    slow: true,
    args: z.object({ patch: patchSetSchema }).strict(),
    doc: 'Type-check a patch set against the live program. Nothing is staged.',
  },
  stage: {
    role: 'patch',
    audited: true,
    slow: true,
    args: z.object({ patch: patchSetSchema, ttlMs: z.number().int().min(1000).max(600000).optional() }).strict(),
    doc: 'Check, transpile, load and verify a patch set; hold it for commit (phase one). With trusted keys: signed sets only.',
  },
  commit: {
    role: 'patch',
    audited: true,
    slow: true,
    args: z.object({ stageId, watch: watchArgsSchema.optional() }).strict(),
    doc: 'Commit a staged patch set atomically (phase two); with watch, then watch the new generation and revert it if a threshold is crossed.',
  },
  abort: { role: 'patch', audited: true, slow: false, args: z.object({ stageId }).strict(), doc: 'Discard a staged patch set.' },
  apply: {
    role: 'patch',
    audited: true,
    slow: true,
    args: z.object({ patch: patchSetSchema, dryRun: z.boolean().optional(), watch: watchArgsSchema.optional() }).strict(),
    doc: 'Check, stage and commit in one op (dryRun: stop before commit); with watch, then watch the new generation and revert it if a threshold is crossed. With trusted keys: signed sets only.',
  },
  rollback: {
    role: 'patch',
    audited: true,
    slow: true,
    args: z.object({ to: generation.optional() }).strict(),
    doc: 'Atomically restore the module versions of an earlier generation (default: the previous one).',
  },
  'audit-verify': { role: 'admin', audited: true, slow: false, args: empty, doc: "Verify the audit log's hash chain." },
  eval: {
    role: 'read',
    audited: true,
    slow: true,
    args: z
      .object({
        code: z
          .string()
          .min(1)
          .max(1024 * 1024),
        session: z.string().max(100).optional(),
        timeoutMs: z.number().int().min(1).max(60000).optional(),
      })
      .strict(),
    doc: 'Evaluate TypeScript in the live process (read/patch: side-effect-free only).',
  },
  'repl-open': {
    role: 'read',
    audited: true,
    slow: false,
    args: z.object({ generation: generation.optional() }).strict(),
    doc: 'Open a REPL session with its own declarations.',
  },
  'repl-close': {
    role: 'read',
    audited: true,
    slow: false,
    args: z.object({ session: z.string().min(1).max(100) }).strict(),
    doc: 'Close a REPL session.',
  },
  quarantine: {
    role: 'patch',
    audited: true,
    slow: true,
    // Exactly one of the two (checked by the handler); a patch is named by its id or `#SEQ`.
    args: z.object({ drop: z.string().min(1).max(200).optional(), reapply: z.string().min(1).max(200).optional() }).strict(),
    doc: 'A patch quarantined after its host crashed: drop it (never replayed) or re-apply it (checked, staged, committed and journaled again). The list is in status.',
  },
  warm: {
    role: 'patch',
    audited: true,
    slow: false,
    args: empty,
    doc: 'Start the type-check service and build the live program now, so the next check or apply is a warm one; answers at once. The service stops again after its idle time.',
  },
  restart: {
    role: 'patch',
    audited: true,
    slow: false,
    args: z.object({ deadlineMs: z.number().int().min(100).max(600000).optional() }).strict(),
    doc: 'Cluster primaries: replace the workers one by one (new one synced and listening, then the old one drained).',
  },
} as const satisfies Record<string, OpSpec>;

export type OpName = keyof typeof OPS;
export const OP_NAMES = Object.keys(OPS) as OpName[];
export type OpArgs<O extends OpName> = z.infer<(typeof OPS)[O]['args']>;

export function isOpName(x: string): x is OpName {
  return Object.prototype.hasOwnProperty.call(OPS, x);
}

// ---- result shapes ----

export interface DescribeResult {
  protocol: number;
  agentVersion: string;
  ops: { name: OpName; role: Role; doc: string }[];
}

export interface LiveGeneration {
  generation: number;
  inflight: number;
  current: boolean;
  /**
   * What this generation's code did since it became live (absent where the engine does not count); on
   * a cluster primary, summed over the workers that answered.
   */
  health?: GenerationHealth;
}

export interface DriftEntry {
  module: string;
  /** The journaled patch that was not re-applied. */
  patchId?: string;
  generation?: number;
  expectedHash: string;
  actualHash: string;
}

/** A journaled patch set that is not replayed because its host died soon after applying it. */
export interface QuarantinedPatch {
  /** Journal record number; `#SEQ` names the patch where it has no id. */
  seq: number;
  patchId?: string;
  message?: string;
  /** Who committed it, and when. */
  who: string;
  committedAt: string;
  quarantinedAt: string;
  reason: string;
  modules: string[];
}

/** A journal line that could not be read (not replayed). */
export interface JournalProblemInfo {
  line: number;
  offset: number;
  bytes: number;
  reason: string;
}

/** The journal as the last start found it. */
export interface JournalStatus {
  dir: string;
  /** false when started with LIVEPATCH_REPLAY=off: no journaled patch is live. */
  replay: boolean;
  /** Intact records read at start. */
  records: number;
  unreadable: JournalProblemInfo[];
  /** Newest patch on probation (crash-loop protection) and until when, if any. */
  probation?: { seq: number; patchId?: string; until: string };
}

export interface StatusResult {
  protocol: number;
  agentVersion: string;
  pid: number;
  uptimeSec: number;
  node: string;
  root: string;
  currentGeneration: number;
  liveGenerations: LiveGeneration[];
  modules: number;
  patchedModules: string[];
  /** `signaturesRequired`: the agent has trusted keys (LIVEPATCH_TRUSTED_KEYS); apply/stage take only signed sets. */
  /**
   * `checks`: where patches are type-checked: 'host' (sources and tsconfig here), or 'client' (a build
   * manifest and no sources: only patches checked on a client with --check-here are accepted).
   */
  patching: { enabled: boolean; reason?: string; signaturesRequired?: boolean; checks?: 'host' | 'client' };
  drift: DriftEntry[];
  /** Files under the root the app loaded that could not be made live (a patch naming one is refused: LP_ERR_PATCH_NOT_LIVE). */
  notLive?: { module: string; reason: string }[];
  /** Patches held back from replay by crash-loop protection (present with a journal). */
  quarantined?: QuarantinedPatch[];
  /** Present with a journal. */
  journal?: JournalStatus;
  /** A watch in progress (`apply --watch`). */
  watch?: WatchStatus;
  /** Present in cluster mode: one row per worker. */
  workers?: { pid: number; id: number; generation: number; liveGenerations: LiveGeneration[]; lagging: boolean }[];
  /** Present when this host type-checks patches itself (`patching.checks` 'host'): its type-check service. */
  checker?: CheckerStatus;
}

/**
 * The type-check service of a host that checks patches itself. `state`: 'stopped' (not running: the
 * next check starts it and builds the program, a cold check), 'busy' (answering a request: a check,
 * a REPL input, a warm-up), 'ready' (running and idle: the next check is a warm one). It stops after
 * `idleMs` without a request; `maxMb` caps its heap.
 */
export interface CheckerStatus {
  state: 'stopped' | 'busy' | 'ready';
  pid?: number;
  idleMs: number;
  maxMb: number;
  /**
   * The compiler of the last check: 'native' (TypeScript's native compiler) or 'typescript' (its
   * JavaScript compiler). Absent before the service's first check. `engineNote`: why the setting
   * 'auto' (LIVEPATCH_CHECKER_ENGINE) fell back to 'typescript'.
   */
  engine?: CheckerEngine;
  engineNote?: string;
}

/**
 * Which compiler type-checks patches on a host (LIVEPATCH_CHECKER_ENGINE): 'native' is TypeScript's
 * native compiler (typescript@7), 'typescript' its JavaScript compiler (the `typescript` package).
 */
export type CheckerEngine = 'native' | 'typescript';

/** LIVEPATCH_CHECKER_ENGINE's values: 'auto' is the native compiler when it reads the project as its build does, else the JavaScript one. */
export type CheckerEngineSetting = 'auto' | CheckerEngine;

/**
 * `started`: this call started building the program. False, with `reason`, when the service was
 * already running (busy or ready) or this host does not check patches itself (a build manifest and
 * no sources: patches are checked on the client).
 */
export interface WarmResult {
  started: boolean;
  reason?: string;
  checker?: CheckerStatus;
}

/**
 * One row per live module of the generation listed (the current one, or `generation`). `health`: that
 * generation's figures since it became live, the same on every row (absent when it is not live or the
 * engine does not count health, e.g. a cluster primary).
 */
export type VersionsResult = (ModuleVersionInfo & { health?: GenerationHealth })[];

export interface SourceResult {
  module: string;
  version: number;
  generation: number;
  hash: string;
  source: string;
}

export interface ExportsResult {
  module: string;
  exports: { name: string; kind: 'function' | 'class' | 'value' }[];
}

export interface HistoryResult {
  generations: GenerationSummary[];
  /** Patches held back from replay by crash-loop protection (present with a journal). */
  quarantined?: QuarantinedPatch[];
}

export interface QuarantineResult {
  /** The patch dropped, or the one re-applied. */
  patch: QuarantinedPatch;
  action: 'dropped' | 'reapplied';
  /** For a re-apply: the commit. */
  commit?: CommitResult;
  /** What is still quarantined. */
  quarantined: QuarantinedPatch[];
}

export interface CheckResult {
  ok: boolean;
  diagnostics: Diagnostic[];
  /** Modules type-checked (patched and their dependents). */
  checkedFiles: number;
  durationMs: number;
  /** Which side type-checked: the host, or the client that sent `compiled`. */
  checkedBy?: 'host' | 'client';
  /** The compiler of a check made on the client (offline `check`, `--check-here`). */
  engine?: CheckerEngine;
  /** Why that check used the JavaScript compiler under `auto`. */
  engineNote?: string;
}

export interface StageResult {
  stageId: string;
  baseGeneration: number;
  modules: { module: string; version: number; hash: string; isNew: boolean }[];
  diagnostics: Diagnostic[];
  expiresAt: string;
  checkedBy?: 'host' | 'client';
}

export interface CommitResult {
  generation: number;
  previousGeneration: number;
  changed: { module: string; version: number; hash: string }[];
  patchId?: string;
  dryRun?: boolean;
  timings?: Record<string, number>;
  /** Which side type-checked the patch (absent for rollbacks). */
  checkedBy?: 'host' | 'client';
  /** Cluster mode: what each worker did (committed, exited, failed) and its generation after. */
  workers?: { id: number; pid: number; outcome: string; generation?: number; error?: string }[];
  /** With `watch`: how the watch after the commit ended. */
  watch?: WatchResult;
}

export interface HealthResult {
  currentGeneration: number;
  /** Live generations, oldest first, each with its health since it became live. */
  generations: LiveGeneration[];
  /** A watch in progress. */
  watch?: WatchStatus;
}

export interface AuditVerifyResult {
  ok: boolean;
  records: number;
  /** 1-based line of the first record that does not chain. */
  brokenAt?: number;
  reason?: string;
}

export interface EvalResult {
  /** util.inspect rendering of the value, size-limited. */
  output: string;
  console: { level: 'log' | 'info' | 'warn' | 'error' | 'debug'; text: string }[];
  truncated: boolean;
  durationMs: number;
}

export interface ReplOpenResult {
  session: string;
}

export interface RestartResult {
  /** One row per replaced worker; `ended` says whether the old one exited by itself or was killed at the deadline. */
  replaced: { old: { id: number; pid: number }; new: { id: number; pid: number; generation: number }; ended: 'exited' | 'killed' }[];
  generation: number;
  durationMs: number;
}

export interface OpResults {
  describe: DescribeResult;
  status: StatusResult;
  versions: VersionsResult;
  source: SourceResult;
  exports: ExportsResult;
  history: HistoryResult;
  subscribe: { subscribed: true };
  health: HealthResult;
  check: CheckResult;
  stage: StageResult;
  commit: CommitResult;
  abort: { aborted: true };
  apply: CommitResult;
  rollback: CommitResult;
  'audit-verify': AuditVerifyResult;
  eval: EvalResult;
  'repl-open': ReplOpenResult;
  'repl-close': { closed: true };
  quarantine: QuarantineResult;
  warm: WarmResult;
  restart: RestartResult;
}
