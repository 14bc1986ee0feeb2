/**
 * `livepatch apply HOST:PORT[,HOST:PORT...] PATCH...`: check, stage and commit on one agent, or
 * two-phase across several (see ../fleet.ts). Human output is one row per host on stdout; on failure
 * the diagnostics (tsc form) and one `livepatch: ...` line per failing host go to stderr. --json
 * prints `{ok, committed, dryRun, hosts: [...]}` and, on failure, `error` and `diagnostics` too. With
 * `--watch`, each agent watches the new generation after the commit and the CLI waits for the verdict:
 * a revert (on any agent: every agent is then rolled back) exits 6 and adds `reverted: {reason, figures}`.
 */
import type { Command } from 'commander';
import {
  LivepatchError,
  WATCH_DEFAULTS,
  WATCH_MAX_MS,
  WATCH_MIN_MS,
  parseDuration,
  parseTarget,
  type WatchArgs,
  type WatchResult,
} from '../../../shared';
import { isFleetUrl } from '../../../shared/fleet';
import { applyFleetCommand } from './fleet-etcd';
import { formatCommit, formatDiagnostics, table } from '../../format';
import { EXIT_INTERRUPTED, applyToFleet, type FleetOutcome, type HostOutcome } from '../fleet';
import { addCommonOptions, addPatchOptions, commonFrom, connectFromOptions, patchFrom, withAgent, type Finish } from '../options';
import { note, printJson, runCommand, wireOf } from '../output';
import { checkOnClient } from '../../client-check';

/** `a:1,b:2` → targets; throws LP_ERR_CLI_USAGE for an empty or malformed entry, or a repeat. */
export function parseTargets(list: string): string[] {
  const targets = list.split(',').map((t) => t.trim());
  for (const t of targets) {
    if (!parseTarget(t))
      throw new LivepatchError(
        'LP_ERR_CLI_USAGE',
        `invalid agent address "${t}": use host:port or unix:/path, comma-separated for several`,
      );
  }
  if (new Set(targets).size !== targets.length) throw new LivepatchError('LP_ERR_CLI_USAGE', 'the same agent address is given twice');
  return targets;
}

/** `--watch` and its thresholds → the watch arguments (undefined without --watch); usage errors throw. */
export function watchFrom(o: Record<string, unknown>): WatchArgs | undefined {
  const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
  const usage = (m: string) => new LivepatchError('LP_ERR_CLI_USAGE', m);
  const d = str('watch');
  const thresholds = ['maxErrorRate', 'maxP99Ratio', 'minRequests'].filter((k) => str(k) !== undefined);
  if (d === undefined) {
    if (thresholds.length) throw usage('--max-error-rate, --max-p99-ratio and --min-requests need --watch DURATION');
    return undefined;
  }
  const durationMs = parseDuration(d);
  if (durationMs === undefined || durationMs < WATCH_MIN_MS || durationMs > WATCH_MAX_MS)
    throw usage(`--watch "${d}": expected a duration between 1s and 10m, e.g. 30s, 2m, 1500ms`);
  const args: WatchArgs = { durationMs };
  const num = (k: string, flag: string, ok: (n: number) => boolean, what: string): number | undefined => {
    const v = str(k);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || !ok(n)) throw usage(`${flag} "${v}": expected ${what}`);
    return n;
  };
  const r = num('maxErrorRate', '--max-error-rate', (n) => n >= 0 && n <= 1, 'a fraction between 0 and 1, e.g. 0.01');
  const x = num('maxP99Ratio', '--max-p99-ratio', (n) => n >= 1 && n <= 1000, 'a ratio of at least 1, e.g. 2');
  const n = num(
    'minRequests',
    '--min-requests',
    (v) => Number.isInteger(v) && v >= 1 && v <= 1_000_000,
    'a whole number of requests, at least 1',
  );
  if (r !== undefined) args.maxErrorRate = r;
  if (x !== undefined) args.maxP99Ratio = x;
  if (n !== undefined) args.minRequests = n;
  return args;
}

function describeWatch(w: WatchResult | undefined): string {
  if (!w) return '';
  switch (w.verdict) {
    case 'kept':
      return `; watch: kept (${w.figures.current.requests} request(s), error rate ${w.figures.current.errorRate}${w.reason ? `; ${w.reason}` : ''})`;
    case 'reverted':
      return `; watch: REVERTED as generation ${w.revertGeneration ?? '?'}: ${w.reason ?? ''}`;
    default:
      return `; watch: ${w.verdict}${w.reason ? ` (${w.reason})` : ''}`;
  }
}

function describeHost(h: HostOutcome): string {
  switch (h.state) {
    case 'reverted':
      return h.result
        ? `${formatCommit(h.result)}${describeWatch(h.result.watch)}${h.revert ? `; reverted with the fleet as generation ${h.revert.generation}` : ''}`
        : 'reverted';
    case 'committed':
    case 'dry-run':
      return h.result
        ? formatCommit(h.result) + describeWatch(h.result.watch)
        : `staged against generation ${h.stage?.baseGeneration ?? '?'}, then released (dry run)`;
    case 'already-applied':
      return 'this patch id was already committed here';
    case 'aborted':
      return 'staged, then aborted: another agent did not stage, or the rollout was interrupted';
    case 'skipped':
      return 'nothing done: another agent could not be reached or refused the connection';
    default:
      return `${h.error?.code ?? 'error'}: ${h.error?.message ?? ''}`;
  }
}

/** Human rendering of a fleet outcome (stdout part). */
export function formatOutcome(o: FleetOutcome): string {
  return table(
    ['AGENT', 'STATE', 'DETAIL'],
    o.hosts.map((h) => [h.target, h.state, describeHost(h)]),
  );
}

function report(o: FleetOutcome, json: boolean): void {
  const failedHosts = o.hosts.filter((h) => h.error);
  const several = o.hosts.length > 1;
  for (const h of failedHosts) {
    if (h.diagnostics) process.stderr.write(formatDiagnostics(h.diagnostics));
    note(`${several ? h.target + ': ' : ''}${h.error!.message}`);
  }
  if (o.reverted)
    note(
      `the watch reverted the patch${o.reverted.target ? ` (tripped on ${o.reverted.target}; every agent was rolled back)` : ''}: ${o.reverted.reason}`,
    );
  else if (o.exitCode === EXIT_INTERRUPTED) note('interrupted: nothing was committed on any agent');
  else if (!o.ok && o.committed)
    note('some agents committed and others did not: run `livepatch rollback` on the committed ones or re-apply');
  else if (!o.ok && several) note('nothing was committed on any agent');
  if (json) {
    const { exitCode: _exit, ...body } = o;
    const first = failedHosts[0];
    const diagnostics = failedHosts.flatMap((h) => h.diagnostics ?? []);
    printJson({ ...body, ...(first ? { error: first.error } : {}), ...(diagnostics.length ? { diagnostics } : {}) });
  } else if (several || o.ok || o.reverted) process.stdout.write(formatOutcome(o));
}

/** Register `apply` on `program`. */
export function registerApply(program: Command, finish: Finish): void {
  addPatchOptions(
    addCommonOptions(
      program
        .command('apply')
        .description('check, stage and commit PATCH; with several agents, commit on all only if every one staged')
        .argument('<targets>', 'agent address(es): host:port or unix:/path, comma-separated; or a fleet: etcd://HOST:PORT/NAME')
        .argument('<patch...>', '.ts files, directories, or a .json patch set')
        .option('--dry-run', 'check, load and verify, then discard instead of committing')
        .option('--skip-applied', 'agents that already committed this patch id count as done (needs --id): re-runs converge')
        .option('--canary <n>', 'fleet (etcd://) only: commit on N members (or P%) first, then the rest if the canary check passes')
        .option('--canary-check <command>', 'fleet only: shell command run once the canaries committed; a non-zero exit rolls them back')
        .option('--deadline <ms>', 'fleet only: undecided this long after the proposal, the rollout is aborted (default 60000)')
        .option(
          '--watch <duration>',
          'after the commit, watch the new generation for DURATION (30s, 2m, 1500ms; at most 10m) and revert it if a threshold is crossed (exit 6); with --canary on a fleet, the canaries watch before the rest commit',
        )
        .option(
          '--max-error-rate <r>',
          `with --watch: revert when the error rate exceeds the previous generation's by more than R (default ${WATCH_DEFAULTS.maxErrorRate})`,
        )
        .option(
          '--max-p99-ratio <x>',
          `with --watch: revert when p99 latency exceeds X times the previous generation's (default ${WATCH_DEFAULTS.maxP99Ratio})`,
        )
        .option(
          '--min-requests <n>',
          `with --watch: judge only once the new generation finished N requests (default ${WATCH_DEFAULTS.minRequests})`,
        )
        .option(
          '--check-here',
          "type-check on this machine against the (first) agent's live program and send the JavaScript; agents verify by hash what it was checked against",
        )
        .option('--checkout <dir>', 'with --check-here: the checkout of the deployed commit (default: current directory)'),
    ),
  ).action(async (list: string, paths: string[], o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    if (isFleetUrl(list)) {
      finish(await applyFleetCommand(list, paths, o, () => watchFrom(o)));
      return;
    }
    finish(
      await runCommand(Boolean(opts.json), async () => {
        for (const f of ['canary', 'canaryCheck', 'deadline']) {
          if (o[f] !== undefined)
            throw new LivepatchError(
              'LP_ERR_CLI_USAGE',
              `--${f.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} needs a fleet address (etcd://HOST:PORT/NAME)`,
            );
        }
        const targets = parseTargets(list);
        let patch = patchFrom(paths, o);
        if (o['checkHere'] === true) {
          const mine = await withAgent(targets[0]!, opts, (c) =>
            checkOnClient(c, patch, typeof o['checkout'] === 'string' ? o['checkout'] : process.cwd()),
          );
          if (!mine.result.ok || !mine.patch) {
            const errors = mine.result.diagnostics.filter((d) => d.category === 'error');
            const syntax = errors.some((d) => d.code >= 1000 && d.code < 2000);
            const err = new LivepatchError(
              syntax ? 'LP_ERR_PATCH_SYNTAX' : 'LP_ERR_PATCH_TYPE',
              `the patch does not type-check against the live program of ${targets[0]} (checked on this machine): ${errors.length} error(s)`,
            );
            process.stderr.write(formatDiagnostics(mine.result.diagnostics));
            note(err.message);
            if (opts.json)
              printJson({
                ok: false,
                committed: false,
                dryRun: o['dryRun'] === true,
                hosts: [],
                error: wireOf(err),
                diagnostics: mine.result.diagnostics,
              });
            return err.exitCode;
          }
          patch = mine.patch;
        }
        const skipApplied = o['skipApplied'] === true;
        if (skipApplied && patch.id === undefined)
          throw new LivepatchError(
            'LP_ERR_CLI_USAGE',
            '--skip-applied needs a patch id: pass --id ID (or set "id" in the .json patch set)',
          );
        const dryRun = o['dryRun'] === true;
        const watch = watchFrom(o);
        if (watch && dryRun)
          throw new LivepatchError('LP_ERR_CLI_USAGE', '--watch needs a commit to watch: it cannot be combined with --dry-run');
        const outcome = await applyToFleet(targets, patch, { dryRun, skipApplied, ...(watch ? { watch } : {}) }, (t) =>
          connectFromOptions(t, opts),
        );
        report(outcome, Boolean(opts.json));
        return outcome.exitCode;
      }),
    );
  });
}
