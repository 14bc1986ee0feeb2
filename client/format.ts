/**
 * Human output: aligned tables and the renderings of status, versions, history and commit results.
 * Pure functions of the op results (strings in, strings out) so they are tested without an agent;
 * nothing decorative here: no colours, no boxes, so the output pastes cleanly into tickets and logs.
 */
import {
  formatDiagnostic,
  formatSigner,
  LivepatchError,
  type CheckerStatus,
  type CommitResult,
  type Diagnostic,
  type GenerationHealth,
  type GenerationSummary,
  type LiveGeneration,
  type QuarantinedPatch,
  type StatusResult,
  type VersionsResult,
} from '../shared';

/** Render rows as columns separated by two spaces; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return (
    all
      .map((r) =>
        r
          .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

/** `3725` → `1h 02m 05s`; short forms for short spans. */
export function formatUptime(sec: number): string {
  const s = Math.max(0, Math.floor(sec));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  if (d > 0) return `${d}d ${two(h)}h ${two(m)}m`;
  if (h > 0) return `${h}h ${two(m)}m ${two(r)}s`;
  if (m > 0) return `${m}m ${two(r)}s`;
  return `${r}s`;
}

/** The first 12 hex digits: enough to tell versions apart in a table. */
export function shortHash(hash: string): string {
  return hash.slice(0, 12);
}

/** ISO time → `2026-11-27 01:02:03Z` (seconds precision, still UTC). */
export function formatTime(iso: string): string {
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(iso);
  return m ? `${m[1]} ${m[2]}Z` : iso;
}

/** The diagnostics an error carries (`details.diagnostics`), if any. */
export function diagnosticsOf(err: unknown): Diagnostic[] {
  if (!(err instanceof LivepatchError)) return [];
  const d = (err.details as { diagnostics?: unknown } | undefined)?.diagnostics;
  return Array.isArray(d) ? (d as Diagnostic[]) : [];
}

/** Diagnostics in tsc's one-line form, one per line (empty string for none). */
export function formatDiagnostics(diags: readonly Diagnostic[]): string {
  return diags.map((d) => formatDiagnostic(d) + '\n').join('');
}

/** The type-check service in one line: its state, what that means for the next check, its limits. */
export function checkerLine(c: CheckerStatus): string {
  const what =
    c.state === 'stopped'
      ? 'stopped (the next check starts it: a cold check)'
      : c.state === 'busy'
        ? `busy (pid ${c.pid ?? '?'})`
        : `ready (pid ${c.pid ?? '?'}: the next check is warm)`;
  const engine =
    c.engine === undefined
      ? ''
      : c.engine === 'native'
        ? '; last check: native compiler'
        : `; last check: JavaScript compiler${c.engineNote !== undefined ? ` (${c.engineNote})` : ''}`;
  return `${what}; stops after ${Math.round(c.idleMs / 1000)} s idle, heap cap ${c.maxMb} MB${engine}`;
}

/** `livepatch status` for humans. */
export function formatStatus(s: StatusResult): string {
  const live = s.liveGenerations
    .slice()
    .sort((a, b) => b.generation - a.generation)
    .map((g) => `${g.generation}${g.current ? ' (current)' : ''}: ${g.inflight} in flight`)
    .join(', ');
  const patched = s.patchedModules.length ? `${s.patchedModules.length} patched: ${s.patchedModules.join(', ')}` : 'none patched';
  const rows: [string, string][] = [
    ['agent', `livepatch ${s.agentVersion}, protocol ${s.protocol}, node ${s.node}`],
    ['pid', String(s.pid)],
    ['uptime', formatUptime(s.uptimeSec)],
    ['root', s.root],
    ['generation', String(s.currentGeneration)],
    ['live', live || 'none'],
    ['modules', `${s.modules} (${patched})`],
    [
      'patching',
      (s.patching.enabled ? 'enabled' : `disabled: ${s.patching.reason ?? 'unknown reason'}`) +
        (s.patching.signaturesRequired ? ' (signed patch sets only)' : '') +
        (s.patching.enabled && s.patching.checks === 'client' ? ' (no sources here: patches checked on the client, --check-here)' : ''),
    ],
    ['drift', s.drift.length ? `${s.drift.length} module(s) differ from the journal` : 'none'],
  ];
  if (s.checker) rows.push(['checker', checkerLine(s.checker)]);
  if (s.watch)
    rows.push([
      'watch',
      `generation ${s.watch.generation} against ${s.watch.previousGeneration} until ${formatTime(s.watch.until)} (by ${s.watch.who})`,
    ]);
  if (s.notLive?.length) rows.push(['not live', `${s.notLive.length} file(s) loaded but not live (patches naming them are refused)`]);
  if (s.journal) {
    const j = s.journal;
    const bits = [`${j.records} record(s)`, j.replay ? 'replayed at start' : 'NOT replayed (LIVEPATCH_REPLAY=off)'];
    if (j.unreadable.length) bits.push(`${j.unreadable.length} unreadable line(s), not replayed`);
    if (j.probation) bits.push(`${j.probation.patchId ?? `#${j.probation.seq}`} on probation until ${formatTime(j.probation.until)}`);
    rows.push(['journal', `${j.dir}: ${bits.join(', ')}`]);
    rows.push([
      'quarantined',
      s.quarantined?.length
        ? `${s.quarantined.length} patch(es) not re-applied: livepatch quarantine HOST --reapply ID | --drop ID`
        : 'none',
    ]);
  }
  let out = rows.map(([k, v]) => `${k.padEnd(12)}${v}`).join('\n') + '\n';
  const health = formatHealth(s.liveGenerations);
  if (health) out += '\n' + health;
  if (s.drift.length) {
    out +=
      '\n' +
      table(
        ['MODULE', 'PATCH', 'EXPECTED', 'ACTUAL'],
        s.drift.map((d) => [d.module, d.patchId ?? '-', shortHash(d.expectedHash), shortHash(d.actualHash)]),
      );
  }
  if (s.notLive?.length)
    out +=
      '\n' +
      table(
        ['NOT LIVE', 'REASON'],
        s.notLive.map((n) => [n.module, n.reason]),
      );
  if (s.journal?.unreadable.length) {
    out +=
      '\n' +
      table(
        ['LINE', 'OFFSET', 'BYTES', 'UNREADABLE JOURNAL LINE'],
        s.journal.unreadable.map((u) => [String(u.line), String(u.offset), String(u.bytes), u.reason]),
      );
  }
  if (s.quarantined?.length) out += '\n' + formatQuarantined(s.quarantined);
  if (s.workers?.length) {
    out +=
      '\n' +
      table(
        ['WORKER', 'PID', 'GENERATION', 'LIVE', 'LAGGING'],
        s.workers.map((w) => [
          String(w.id),
          String(w.pid),
          String(w.generation),
          w.liveGenerations.map((g) => String(g.generation)).join(','),
          w.lagging ? 'yes' : 'no',
        ]),
      );
  }
  return out;
}

const ms = (v: number | undefined): string => (v === undefined ? '-' : `${v} ms`);

/** Per live generation health (newest first); '' when the agent sent none. */
export function formatHealth(live: readonly LiveGeneration[]): string {
  const rows = live
    .filter((g) => g.health)
    .sort((a, b) => b.generation - a.generation)
    .map((g) => {
      const h = g.health!;
      return [
        `${g.generation}${g.current ? '*' : ''}`,
        String(h.requests),
        String(h.status['2xx']),
        String(h.status['3xx']),
        String(h.status['4xx']),
        String(h.status['5xx']),
        String(h.threw),
        String(h.destroyed),
        String(h.uncaught),
        String(h.rejections),
        ms(h.p50Ms),
        ms(h.p99Ms),
        `${(h.errorRate * 100).toFixed(2)} %`,
      ];
    });
  if (!rows.length) return '';
  return table(
    ['GEN', 'REQUESTS', '2XX', '3XX', '4XX', '5XX', 'THREW', 'DESTROYED', 'UNCAUGHT', 'REJECTIONS', 'P50', 'P99', 'ERROR RATE'],
    rows,
  );
}

/** One generation's health on one line (`livepatch versions`). */
export function formatHealthLine(h: GenerationHealth): string {
  const s = h.status;
  return (
    `${h.requests} requests (2xx ${s['2xx']}, 3xx ${s['3xx']}, 4xx ${s['4xx']}, 5xx ${s['5xx']}), ` +
    `threw ${h.threw}, destroyed ${h.destroyed}, uncaught ${h.uncaught}, rejections ${h.rejections}, ` +
    `p50 ${ms(h.p50Ms)}, p99 ${ms(h.p99Ms)}, error rate ${(h.errorRate * 100).toFixed(2)} %`
  );
}

/**
 * `livepatch versions` for humans: one row per live module, then the listed generation's health on
 * one line (when the agent sent it). `generation`: the one asked for (undefined: the current one).
 */
export function formatVersions(v: VersionsResult, generation?: number): string {
  const rows = v
    .slice()
    .sort((a, b) => a.module.localeCompare(b.module))
    .map((m) => [m.module, String(m.version), String(m.generation), shortHash(m.hash), m.patched ? 'yes' : 'no']);
  let out = table(['MODULE', 'VERSION', 'GENERATION', 'HASH', 'PATCHED'], rows);
  const health = v.find((r) => r.health)?.health;
  if (health)
    out += `\nhealth of ${generation === undefined ? 'the current generation' : `generation ${generation}`}: ${formatHealthLine(health)}\n`;
  return out;
}

/** Quarantined patches, one row each: how to name it (id or #SEQ), when, modules, why. */
export function formatQuarantined(q: readonly QuarantinedPatch[]): string {
  return table(
    ['QUARANTINED', 'COMMITTED', 'BY', 'QUARANTINED AT', 'MODULES', 'REASON'],
    q.map((p) => [p.patchId ?? `#${p.seq}`, formatTime(p.committedAt), p.who, formatTime(p.quarantinedAt), p.modules.join(','), p.reason]),
  );
}

/** `livepatch history` for humans: newest first, with live/current markers; then quarantined patches. */
export function formatHistory(gens: readonly GenerationSummary[], quarantined: readonly QuarantinedPatch[] = []): string {
  const signed = gens.some((g) => g.signer);
  const byClient = gens.some((g) => g.checkedBy === 'client');
  const rows = gens
    .slice()
    .sort((a, b) => b.generation - a.generation)
    .map((g) => {
      const state = g.current ? 'current' : g.live ? `live (${g.inflight} in flight)` : '-';
      const what = g.kind === 'rollback' && g.rollbackTo !== undefined ? `rollback to ${g.rollbackTo}` : g.kind;
      const row = [String(g.generation), what, formatTime(g.time), g.who ?? '-', state, g.changed.join(',') || '-', g.message ?? ''];
      // The signer column appears once any generation was signed (agents with trusted keys).
      if (signed) row.splice(4, 0, g.signer ? formatSigner(g.signer) : '-');
      // Which side type-checked: shown once a client checked a patch (--check-here).
      if (byClient) row.splice(row.length - 2, 0, g.checkedBy ?? '-');
      return row;
    });
  const head = ['GEN', 'KIND', 'TIME', 'WHO', 'STATE', 'CHANGED', 'MESSAGE'];
  if (signed) head.splice(4, 0, 'SIGNED BY');
  if (byClient) head.splice(head.length - 2, 0, 'CHECKED');
  const out = table(head, rows);
  return quarantined.length ? `${out}\n${formatQuarantined(quarantined)}` : out;
}

/** One line for a commit or rollback result, e.g. `generation 3 (was 2): src/rates.ts v2`. */
export function formatCommit(r: CommitResult): string {
  const changed = r.changed.map((c) => `${c.module} v${c.version}`).join(', ') || 'no modules changed';
  const head = r.dryRun
    ? `dry run passed against generation ${r.previousGeneration}`
    : `generation ${r.generation} (was ${r.previousGeneration})`;
  return `${head}: ${changed}`;
}
