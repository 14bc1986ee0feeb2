/**
 * `livepatch apply HOST:PORT[,HOST:PORT...] PATCH...`: check, stage and commit on one agent, or
 * two-phase across several (see ../fleet.ts). Human output is one row per host on stdout; on failure
 * the diagnostics (tsc form) and one `livepatch: ...` line per failing host go to stderr. --json
 * prints `{ok, committed, dryRun, hosts: [...]}` and, on failure, `error` and `diagnostics` too.
 */
import type { Command } from 'commander';
import { LivepatchError, parseTarget } from '../../../shared';
import { formatCommit, formatDiagnostics, table } from '../../format';
import { EXIT_INTERRUPTED, applyToFleet, type FleetOutcome, type HostOutcome } from '../fleet';
import { addCommonOptions, addPatchOptions, commonFrom, connectFromOptions, patchFrom, withAgent, type Finish } from '../options';
import { note, printJson, runCommand, wireOf } from '../output';
import { checkOnClient } from '../../client-check';

/** `a:1,b:2` → targets; throws LP_ERR_CLI_USAGE for an empty or malformed entry, or a repeat. */
export function parseTargets(list: string): string[] {
  const targets = list.split(',').map((t) => t.trim());
  for (const t of targets) {
    if (!parseTarget(t)) throw new LivepatchError('LP_ERR_CLI_USAGE', `invalid agent address "${t}": use host:port or unix:/path, comma-separated for several`);
  }
  if (new Set(targets).size !== targets.length) throw new LivepatchError('LP_ERR_CLI_USAGE', 'the same agent address is given twice');
  return targets;
}

function describeHost(h: HostOutcome): string {
  switch (h.state) {
    case 'committed':
    case 'dry-run':
      return h.result ? formatCommit(h.result) : `staged against generation ${h.stage?.baseGeneration ?? '?'}, then released (dry run)`;
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
  return table(['AGENT', 'STATE', 'DETAIL'], o.hosts.map((h) => [h.target, h.state, describeHost(h)]));
}

function report(o: FleetOutcome, json: boolean): void {
  const failedHosts = o.hosts.filter((h) => h.error);
  const several = o.hosts.length > 1;
  for (const h of failedHosts) {
    if (h.diagnostics) process.stderr.write(formatDiagnostics(h.diagnostics));
    note(`${several ? h.target + ': ' : ''}${h.error!.message}`);
  }
  if (o.exitCode === EXIT_INTERRUPTED) note('interrupted: nothing was committed on any agent');
  else if (!o.ok && o.committed) note('some agents committed and others did not: run `livepatch rollback` on the committed ones or re-apply');
  else if (!o.ok && several) note('nothing was committed on any agent');
  if (json) {
    const { exitCode: _exit, ...body } = o;
    const first = failedHosts[0];
    const diagnostics = failedHosts.flatMap((h) => h.diagnostics ?? []);
    printJson({ ...body, ...(first ? { error: first.error } : {}), ...(diagnostics.length ? { diagnostics } : {}) });
  } else if (several || o.ok) process.stdout.write(formatOutcome(o));
}

/** Register `apply` on `program`. */
export function registerApply(program: Command, finish: Finish): void {
  addPatchOptions(
    addCommonOptions(
      program
        .command('apply')
        .description('check, stage and commit PATCH; with several agents, commit on all only if every one staged')
        .argument('<targets>', 'agent address(es): host:port or unix:/path, comma-separated')
        .argument('<patch...>', '.ts files, directories, or a .json patch set')
        .option('--dry-run', 'check, load and verify, then discard instead of committing')
        .option('--skip-applied', 'agents that already committed this patch id count as done (needs --id): re-runs converge')
        .option('--check-here', 'type-check on this machine against the (first) agent\'s live program and send the JavaScript; agents verify by hash what it was checked against')
        .option('--checkout <dir>', 'with --check-here: the checkout of the deployed commit (default: current directory)'),
    ),
  ).action(async (list: string, paths: string[], o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const targets = parseTargets(list);
        let patch = patchFrom(paths, o);
        if (o['checkHere'] === true) {
          const mine = await withAgent(targets[0]!, opts, (c) => checkOnClient(c, patch, typeof o['checkout'] === 'string' ? o['checkout'] : process.cwd()));
          if (!mine.result.ok || !mine.patch) {
            const errors = mine.result.diagnostics.filter((d) => d.category === 'error');
            const syntax = errors.some((d) => d.code >= 1000 && d.code < 2000);
            const err = new LivepatchError(syntax ? 'LP_ERR_PATCH_SYNTAX' : 'LP_ERR_PATCH_TYPE', `the patch does not type-check against the live program of ${targets[0]} (checked on this machine): ${errors.length} error(s)`);
            process.stderr.write(formatDiagnostics(mine.result.diagnostics));
            note(err.message);
            if (opts.json) printJson({ ok: false, committed: false, dryRun: o['dryRun'] === true, hosts: [], error: wireOf(err), diagnostics: mine.result.diagnostics });
            return err.exitCode;
          }
          patch = mine.patch;
        }
        const skipApplied = o['skipApplied'] === true;
        if (skipApplied && patch.id === undefined) throw new LivepatchError('LP_ERR_CLI_USAGE', '--skip-applied needs a patch id: pass --id ID (or set "id" in the .json patch set)');
        const outcome = await applyToFleet(targets, patch, { dryRun: o['dryRun'] === true, skipApplied }, (t) => connectFromOptions(t, opts));
        report(outcome, Boolean(opts.json));
        return outcome.exitCode;
      }),
    );
  });
}
