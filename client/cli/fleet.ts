/**
 * Applying one patch set to one or more agents. One agent: the `apply` op (check, stage and commit in
 * one round trip). Several: two-phase: connect to all, `stage` on all, and `commit` on all only if
 * every agent staged; otherwise `abort` the staged sets everywhere, so the fleet never ends up half
 * patched by a rejection. (A commit that fails after others committed cannot be undone here; it is
 * reported as `commit-failed` and the caller says to roll back.) With `skipApplied`, an agent that
 * already committed this patch id counts as done, so re-running an interrupted rollout converges.
 */
import type { AgentClient } from '../connection';
import {
  EXIT,
  LivepatchError,
  type CommitResult,
  type Diagnostic,
  type ExitCode,
  type PatchSet,
  type StageResult,
  type WatchArgs,
  type WatchFigures,
  type WatchResult,
  type WireError,
} from '../../shared';
import { asLivepatchError, diagnosticsOf, note, wireOf } from './output';
import { progressReporter } from './progress';

/** How long each agent holds a staged set for the commit (the op's maximum). */
export const STAGE_TTL_MS = 600_000;

/** What happened on one host. */
export type HostState =
  'committed' | 'already-applied' | 'dry-run' | 'aborted' | 'rejected' | 'unreachable' | 'skipped' | 'commit-failed' | 'reverted';

/** How to apply. */
export interface FleetOptions {
  /** Stage (or dry-run apply) and discard instead of committing. */
  dryRun?: boolean;
  /** Treat LP_ERR_PATCH_DUPLICATE (this patch id is already committed there) as done on that agent. */
  skipApplied?: boolean;
  /** After the commit, each agent watches the new generation; a revert on one agent reverts all. */
  watch?: WatchArgs;
}

/** One host's outcome, as printed under --json (`hosts[]`). */
export interface HostOutcome {
  target: string;
  state: HostState;
  ok: boolean;
  /** This host's own exit code: 0 unless this host failed (an aborted or skipped host did not fail). */
  exitCode: ExitCode;
  /** Set after a successful stage (fleet mode). */
  stage?: Pick<StageResult, 'stageId' | 'baseGeneration' | 'modules'>;
  /** Set after a commit, or a single-host apply/dry run (with `watch`: `result.watch` is this agent's verdict). */
  result?: CommitResult;
  /** A fleet revert: the rollback this agent did because another agent's watch reverted. */
  revert?: CommitResult;
  error?: WireError;
  diagnostics?: Diagnostic[];
}

/** The whole operation's outcome. */
export interface FleetOutcome {
  /** Every host succeeded (committed, or passed the dry run). */
  ok: boolean;
  /** At least one host committed. */
  committed: boolean;
  dryRun: boolean;
  hosts: HostOutcome[];
  /** Exit code: 0, the first failing host's code (in the order given), 6 after a watch revert, or 130 after Ctrl-C. */
  exitCode: number;
  /** Set when a watch reverted the patch: why, and the figures it judged (`target`: the agent whose watch tripped, with several). */
  reverted?: { reason: string; figures: WatchFigures; target?: string };
}

function failed(target: string, state: HostState, err: unknown): HostOutcome {
  const e = asLivepatchError(err);
  const diags = diagnosticsOf(e);
  return { target, state, ok: false, exitCode: e.exitCode, error: wireOf(e), ...(diags.length ? { diagnostics: diags } : {}) };
}

function finishOutcome(hosts: HostOutcome[], dryRun: boolean): FleetOutcome {
  const ok = hosts.every((h) => h.ok);
  const firstBad = hosts.find((h) => !h.ok && h.error);
  const outcome: FleetOutcome = {
    ok,
    committed: hosts.some((h) => h.state === 'committed' || h.state === 'reverted'),
    dryRun,
    hosts,
    exitCode: ok ? EXIT.OK : (firstBad?.exitCode ?? EXIT.REJECTED),
  };
  const trip = hosts.find((h) => h.result?.watch?.verdict === 'reverted' || h.result?.watch?.verdict === 'revert-failed');
  if (trip)
    outcome.reverted = {
      reason: trip.result!.watch!.reason ?? 'a threshold was crossed',
      figures: trip.result!.watch!.figures,
      ...(hosts.length > 1 ? { target: trip.target } : {}),
    };
  return outcome;
}

/** A committed host's outcome given its watch verdict (none: plain commit). */
function watched(target: string, result: CommitResult): HostOutcome {
  const w: WatchResult | undefined = result.watch;
  if (w?.verdict === 'reverted') {
    const e = new LivepatchError(
      'LP_ERR_WATCH_REVERTED',
      `committed generation ${result.generation}, then the watch reverted it (generation ${w.revertGeneration ?? '?'}): ${w.reason ?? 'a threshold was crossed'}`,
    );
    return { target, state: 'reverted', ok: false, exitCode: e.exitCode, result, error: wireOf(e) };
  }
  if (w?.verdict === 'revert-failed') {
    const e = new LivepatchError(
      'LP_ERR_INTERNAL',
      `committed generation ${result.generation}; the watch found it bad but could not revert it: ${w.reason ?? ''} (run livepatch rollback)`,
    );
    return { target, state: 'committed', ok: false, exitCode: e.exitCode, result, error: wireOf(e) };
  }
  return { target, state: 'committed', ok: true, exitCode: EXIT.OK, result };
}

/** How long to wait for a commit's reply when it watches first. */
function replyTimeout(opts: FleetOptions): { timeoutMs?: number } {
  return opts.watch ? { timeoutMs: 600_000 + opts.watch.durationMs } : {};
}

async function withProgress<T>(
  target: string,
  run: (onProgress: ReturnType<typeof progressReporter>['onProgress']) => Promise<T>,
): Promise<T> {
  const p = progressReporter(target);
  try {
    return await run(p.onProgress);
  } finally {
    p.done();
  }
}

/** Exit code after Ctrl-C (128 + SIGINT, as a shell reports a process killed by it). */
export const EXIT_INTERRUPTED = 130;

/**
 * Ctrl-C while staging: let the stages in flight finish (a stage cannot be recalled mid-way), then
 * abort every staged set and exit 130, so nothing sits on the agents until its hold expires. A second
 * Ctrl-C exits at once. Once commits are under way Ctrl-C is left to its default: they cannot be undone.
 */
function interruptGuard(): { readonly interrupted: boolean; release(): void } {
  let interrupted = false;
  const handler = () => {
    if (interrupted) process.exit(EXIT_INTERRUPTED);
    interrupted = true;
    note('interrupted: waiting for the agents still staging, then aborting every staged set (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', handler);
  return {
    get interrupted() {
      return interrupted;
    },
    release: () => process.off('SIGINT', handler),
  };
}

/** A host where this patch id is already committed, when the caller accepts that as done. */
function alreadyApplied(target: string, err: unknown, opts: FleetOptions): HostOutcome | undefined {
  if (!opts.skipApplied || asLivepatchError(err).code !== 'LP_ERR_PATCH_DUPLICATE') return undefined;
  return { target, state: 'already-applied', ok: true, exitCode: EXIT.OK };
}

/**
 * Phase two: `commit` on every staged host. With a watch, each commit's reply comes with its agent's
 * verdict; the first agent whose watch reverts makes every other agent roll back to the generation it
 * staged on, once that agent has committed (its `watch` progress says so), so its own watch ends as
 * superseded. `reverts()` resolves with those rollbacks (undefined when none was needed).
 */
function commitEverywhere(
  hosts: HostOutcome[],
  live: AgentClient[],
  opts: FleetOptions,
): {
  commits: Promise<CommitResult | undefined>[];
  reverts(): Promise<{ trip: number; results: (PromiseSettledResult<CommitResult | undefined> | undefined)[] } | undefined>;
} {
  const committed: Promise<boolean>[] = [];
  const settle: ((v: boolean) => void)[] = [];
  for (let i = 0; i < hosts.length; i++) committed.push(new Promise<boolean>((r) => settle.push(r)));
  let fleetRevert: Promise<{ trip: number; results: (PromiseSettledResult<CommitResult | undefined> | undefined)[] }> | undefined;
  const revertOthers = (trip: number) => {
    fleetRevert ??= Promise.allSettled(
      hosts.map(async (h, j) => {
        if (j === trip || !h.stage) return undefined;
        if (!(await committed[j]!)) return undefined;
        return live[j]!.request('rollback', { to: h.stage.baseGeneration });
      }),
    ).then((results) => ({ trip, results: results.map((r, j) => (j === trip || !hosts[j]!.stage ? undefined : r)) }));
  };
  const commits = hosts.map((h, i) => {
    if (!h.stage) {
      settle[i]!(false);
      return Promise.resolve(undefined);
    }
    const onProgress = (p: { step: string }) => {
      if (p.step === 'watch') settle[i]!(true);
    };
    const watch = opts.watch ? { watch: opts.watch } : {};
    return live[i]!.request('commit', { stageId: h.stage.stageId, ...watch }, { onProgress, ...replyTimeout(opts) }).then(
      (r) => {
        settle[i]!(true);
        const v = r.watch?.verdict;
        if (v === 'reverted' || v === 'revert-failed') revertOthers(i);
        return r;
      },
      (e: unknown) => {
        settle[i]!(false);
        throw e;
      },
    );
  });
  return { commits, reverts: async () => (fleetRevert ? await fleetRevert : undefined) };
}

/**
 * Apply `patch` to every target. `connect` opens an authenticated client (connection errors are
 * reported per host). Connections are closed before returning.
 */
export async function applyToFleet(
  targets: string[],
  patch: PatchSet,
  opts: FleetOptions,
  connect: (target: string) => Promise<AgentClient>,
): Promise<FleetOutcome> {
  const dryRun = opts.dryRun === true;
  const conns = await Promise.allSettled(targets.map((t) => connect(t)));
  const clients = conns.map((c) => (c.status === 'fulfilled' ? c.value : undefined));
  try {
    if (conns.some((c) => c.status === 'rejected')) {
      // A host that cannot be reached (or refuses the token) stops the whole operation before anything is staged.
      const hosts = conns.map((c, i) => {
        if (c.status === 'fulfilled') return { target: targets[i]!, state: 'skipped' as const, ok: false, exitCode: EXIT.OK };
        return failed(targets[i]!, asLivepatchError(c.reason).exitCode === EXIT.CONNECT ? 'unreachable' : 'rejected', c.reason);
      });
      return finishOutcome(hosts, dryRun);
    }
    const live = clients as AgentClient[];
    if (live.length === 1) {
      const target = targets[0]!;
      try {
        const watch = opts.watch && !dryRun ? { watch: opts.watch } : {};
        const result = await withProgress(target, (onProgress) =>
          live[0]!.request('apply', { patch, ...(dryRun ? { dryRun: true } : {}), ...watch }, { onProgress, ...replyTimeout(opts) }),
        );
        return finishOutcome(
          [dryRun ? { target, state: 'dry-run', ok: true, exitCode: EXIT.OK, result } : watched(target, result)],
          dryRun,
        );
      } catch (err) {
        return finishOutcome([alreadyApplied(target, err, opts) ?? failed(target, 'rejected', err)], dryRun);
      }
    }
    // Phase one: stage everywhere. The agent's default hold (60 s) could expire on a fast agent while
    // a slow one is still type-checking, and then only the slow one would commit; hold for the longest
    // allowed instead. Every failure path below aborts explicitly, so nothing is held that long for naught.
    const guard = interruptGuard();
    let staged: PromiseSettledResult<StageResult>[];
    try {
      staged = await Promise.allSettled(
        live.map((c, i) => withProgress(targets[i]!, (onProgress) => c.request('stage', { patch, ttlMs: STAGE_TTL_MS }, { onProgress }))),
      );
    } finally {
      guard.release();
    }
    const hosts: HostOutcome[] = staged.map((s, i) =>
      s.status === 'fulfilled'
        ? {
            target: targets[i]!,
            state: dryRun ? 'dry-run' : 'aborted',
            ok: dryRun,
            exitCode: EXIT.OK,
            stage: { stageId: s.value.stageId, baseGeneration: s.value.baseGeneration, modules: s.value.modules },
          }
        : (alreadyApplied(targets[i]!, s.reason, opts) ?? failed(targets[i]!, 'rejected', s.reason)),
    );
    const allStaged = hosts.every((h) => h.stage || h.state === 'already-applied');
    if (!allStaged || dryRun || guard.interrupted) {
      // Release what was staged; an abort that fails only means the stage will expire on its own.
      await Promise.allSettled(
        hosts.map((h, i) => (h.stage ? live[i]!.request('abort', { stageId: h.stage.stageId }) : Promise.resolve())),
      );
      const outcome = finishOutcome(hosts, dryRun);
      return guard.interrupted ? { ...outcome, ok: false, exitCode: EXIT_INTERRUPTED } : outcome;
    }
    // Phase two: every host staged (or already has this patch), commit where staged.
    const fleet = commitEverywhere(hosts, live, opts);
    const commits = await Promise.allSettled(fleet.commits);
    const reverts = await fleet.reverts();
    const done = commits.map((r, i): HostOutcome => {
      const h = hosts[i]!;
      if (!h.stage) return h;
      if (r.status === 'rejected') return { ...failed(h.target, 'commit-failed', r.reason), stage: h.stage };
      const own = { ...watched(h.target, r.value!), stage: h.stage };
      const rev = reverts?.results[i];
      if (!rev || own.state === 'reverted') return own;
      const why = `reverted with the fleet: the watch on ${hosts[reverts.trip]!.target} crossed a threshold`;
      if (rev.status === 'rejected') {
        const e = asLivepatchError(rev.reason);
        return {
          ...own,
          ok: false,
          exitCode: e.exitCode,
          error: wireOf(new LivepatchError(e.code, `${why}, but the rollback here failed: ${e.message} (run livepatch rollback)`)),
        };
      }
      if (!rev.value) return own;
      const e = new LivepatchError('LP_ERR_WATCH_REVERTED', `${why} (generation ${rev.value.generation})`);
      return { ...own, state: 'reverted', ok: false, exitCode: e.exitCode, error: wireOf(e), revert: rev.value };
    });
    return finishOutcome(done, dryRun);
  } finally {
    for (const c of clients) c?.close();
  }
}
