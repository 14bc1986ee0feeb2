/**
 * The fleet forms of `apply`, `status`, `history` and `rollback` (TARGET = etcd://HOST:PORT/NAME):
 * rendering and exit codes around ../fleet-etcd.ts. The etcd client is loaded only on these paths.
 * --json prints the outcome object; failures add `error` ({code, message}) and exit with the code's
 * registry exit code.
 */
import { EXIT, LivepatchError, exitCodeFor, isErrorCode, type WatchArgs } from '../../../shared';
import { parseFleetUrl } from '../../../shared/fleet';
import { table } from '../../format';
import { patchFrom } from '../options';
import { note, printJson, runCommand } from '../output';

// Loaded on use: the plain agent commands never pay for the etcd client.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lib = () => require('../fleet-etcd') as typeof import('../fleet-etcd');

function exitOf(code: string | undefined): number {
  if (!code) return EXIT.OK;
  return isErrorCode(code) ? exitCodeFor(code) : EXIT.REJECTED;
}

/** Longest --deadline: members hold a staged set for the deadline plus 30 s, and at most 10 minutes. */
const MAX_DEADLINE_MS = 540_000;

function parseDeadline(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  // A member holds its staged set for at most 10 minutes (the stage op's limit), deadline included.
  if (typeof v !== 'string' || !/^\d+$/.test(v) || n < 1000 || n > MAX_DEADLINE_MS)
    throw new LivepatchError(
      'LP_ERR_CLI_USAGE',
      `invalid --deadline "${typeof v === 'string' ? v : typeof v}": expected milliseconds between 1000 and ${MAX_DEADLINE_MS}`,
    );
  return n;
}

/** Time a canary rollout keeps past its canaries' watch window by default (stage, commit, verdicts). */
const WATCH_DEADLINE_MARGIN_MS = 60_000;

/**
 * `livepatch apply etcd://HOST:PORT/NAME PATCH...`. `watchOf` reads --watch and its thresholds (usage
 * errors throw). With --canary and --watch the canaries' watch happens before the decision, so the
 * deadline defaults to the watch window plus 60 s, and a --deadline shorter than the window plus 10 s is
 * refused.
 */
export async function applyFleetCommand(
  url: string,
  paths: string[],
  o: Record<string, unknown>,
  watchOf: () => WatchArgs | undefined = () => undefined,
): Promise<number> {
  const json = o['json'] === true;
  return runCommand(json, async () => {
    if (o['dryRun'] === true || o['skipApplied'] === true)
      throw new LivepatchError(
        'LP_ERR_CLI_USAGE',
        '--dry-run and --skip-applied are for agent addresses; a fleet apply is all-or-nothing by itself',
      );
    parseFleetUrl(url);
    const { applyThroughFleet, parseCanary } = lib();
    const canary = typeof o['canary'] === 'string' ? parseCanary(o['canary']) : undefined;
    if (o['canaryCheck'] !== undefined && !canary) throw new LivepatchError('LP_ERR_CLI_USAGE', '--canary-check needs --canary');
    const watch = watchOf();
    let deadlineMs = parseDeadline(o['deadline']);
    if (watch && canary) {
      if (deadlineMs === undefined) deadlineMs = Math.min(MAX_DEADLINE_MS, watch.durationMs + WATCH_DEADLINE_MARGIN_MS);
      else if (deadlineMs < watch.durationMs + 10_000)
        throw new LivepatchError(
          'LP_ERR_CLI_USAGE',
          `--deadline ${deadlineMs} is too short for --canary with --watch ${watch.durationMs} ms: the canaries' watch happens before the decision (give at least the watch plus 10000 ms)`,
        );
    }
    const patch = patchFrom(paths, o);
    const outcome = await applyThroughFleet(url, patch, {
      ...(canary ? { canary } : {}),
      ...(deadlineMs !== undefined ? { deadlineMs } : {}),
      ...(watch ? { watch } : {}),
      ...(typeof o['canaryCheck'] === 'string' ? { canaryCheck: o['canaryCheck'] } : {}),
      note: (l) => note(l),
    });
    if (outcome.error) note(`${outcome.error.code}: ${outcome.error.message}`);
    if (outcome.reverted) note(`the watch reverted the patch (tripped on ${outcome.reverted.target}): ${outcome.reverted.reason}`);
    for (const m of outcome.members)
      if (m.error && m.state !== 'committed') note(`${m.address || m.id}: ${m.error.code} ${m.error.message}`);
    if (json) printJson(outcome);
    else {
      const withWatch = outcome.members.some((m) => m.watch);
      process.stdout.write(
        table(
          ['MEMBER', 'AGENT', 'STATE', ...(withWatch ? ['WATCH'] : [])],
          outcome.members.map((m) => [
            m.id + (m.canary ? ' (canary)' : ''),
            m.address,
            m.state,
            ...(withWatch ? [m.watch?.verdict ?? '-'] : []),
          ]),
        ),
      );
      process.stdout.write(
        outcome.committed && outcome.reverted
          ? `fleet ${outcome.fleet}: committed, then reverted by the watch: rolled back as fleet generation ${outcome.generation} (patch ${outcome.patchId})\n`
          : outcome.committed
            ? `fleet ${outcome.fleet}: committed as fleet generation ${outcome.generation} (patch ${outcome.patchId})\n`
            : `fleet ${outcome.fleet}: nothing committed (rollout ${outcome.rollout} ${outcome.decision === 'abort' ? 'aborted' : 'undecided'})\n`,
      );
    }
    return outcome.ok ? EXIT.OK : exitOf(outcome.error?.code);
  });
}

/** `livepatch status etcd://HOST:PORT/NAME`. */
export async function fleetStatusCommand(url: string, json: boolean): Promise<number> {
  return runCommand(json, async () => {
    const s = await lib().fleetStatus(url);
    if (json) printJson(s);
    else {
      process.stdout.write(`fleet ${s.fleet}: generation ${s.generation}, ${s.members.length} member(s)${s.ok ? '' : ', some differ'}\n`);
      process.stdout.write(
        table(
          ['MEMBER', 'AGENT', 'HOST', 'PID', 'GEN', 'FLEET GEN', 'STATE', 'FLAGS'],
          s.members.map((m) => [
            m.id,
            m.address,
            m.host,
            String(m.pid),
            String(m.generation),
            String(m.fleetGeneration),
            m.state,
            m.flags.join('; ') || '-',
          ]),
        ),
      );
      for (const m of s.members) if (m.error) note(`${m.id}: ${m.error.code} ${m.error.message}`);
    }
    return EXIT.OK;
  });
}

/** `livepatch history etcd://HOST:PORT/NAME`. */
export async function fleetHistoryCommand(url: string, json: boolean, limit: number | undefined): Promise<number> {
  return runCommand(json, async () => {
    const h = await lib().fleetHistory(url);
    const entries = [...h.entries].reverse().slice(0, limit ?? h.entries.length);
    if (json) printJson({ fleet: h.fleet, generation: h.generation, entries });
    else
      process.stdout.write(
        table(
          ['GEN', 'KIND', 'WHEN', 'WHO', 'DETAIL'],
          entries.map((e) => [
            String(e.seq),
            e.kind,
            e.time,
            e.by,
            e.kind === 'patch'
              ? `${e.patch.id}${typeof e.patch.message === 'string' ? `: ${e.patch.message}` : ''} (${Object.keys(e.patch.files).join(', ')})`
              : `to fleet generation ${e.to}`,
          ]),
        ),
      );
    return EXIT.OK;
  });
}

/** `livepatch rollback etcd://HOST:PORT/NAME [--to FLEET_GENERATION]`. */
export async function fleetRollbackCommand(url: string, json: boolean, to: number | undefined): Promise<number> {
  return runCommand(json, async () => {
    const r = await lib().fleetRollback(url, to);
    if (json) printJson(r);
    else
      process.stdout.write(
        `fleet ${r.fleet}: rolled back to fleet generation ${r.to} as generation ${r.generation}; the members carry it out\n`,
      );
    return EXIT.OK;
  });
}
