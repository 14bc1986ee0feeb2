/**
 * What the main pane shows for the current tab, as tagged lines (pure). The reducer uses the line
 * count to clamp scrolling; views/main.ts slices the lines to the pane's height.
 */
import { createTwoFilesPatch } from 'diff';
import { formatDiagnostic } from '../../shared';
import { formatHistory, formatQuarantined } from '../format';
import { esc, highlight } from './highlight';
import { draftModules, outdatedDraft, shownSource } from './selectors';
import type { TuiState } from './state';

/** Source with line numbers and colouring; the marked line (a diagnostic's) is flagged in red. */
function sourceLines(s: TuiState): string[] {
  const m = s.selected;
  if (!m) return ['{gray-fg}no module selected{/gray-fg}'];
  const text = shownSource(s, m);
  if (text === undefined) return [`{gray-fg}loading ${esc(m)}…{/gray-fg}`];
  const lines = highlight(text);
  const width = String(lines.length).length;
  const mark = s.mark?.module === m ? s.mark.line : undefined;
  const diags = new Map<number, string>();
  for (const d of s.diagnostics) if (d.file === m && d.line !== undefined && !diags.has(d.line)) diags.set(d.line, d.message);
  const out: string[] = [];
  lines.forEach((l, i) => {
    const n = i + 1;
    const gutter = String(n).padStart(width);
    const flag = n === mark ? '{red-fg}>{/red-fg}' : diags.has(n) ? '{red-fg}!{/red-fg}' : ' ';
    out.push(`${flag}{gray-fg}${gutter} │{/gray-fg} ${l}`);
    if (n === mark && diags.has(n)) out.push(`{red-fg}${' '.repeat(width + 3)} ^ ${esc(diags.get(n)!)}{/red-fg}`);
  });
  return out;
}

function exportLines(s: TuiState): string[] {
  const m = s.selected;
  if (!m) return ['{gray-fg}no module selected{/gray-fg}'];
  const e = s.exports[m];
  if (!e) return [`{gray-fg}loading exports of ${esc(m)}…{/gray-fg}`];
  if (e.exports.length === 0) return ['(no exports)'];
  return e.exports.map((x) => `{cyan-fg}${x.kind.padEnd(9)}{/cyan-fg} ${esc(x.name)}`);
}

function diffLines(s: TuiState): string[] {
  const mods = draftModules(s);
  if (mods.length === 0) return ['{gray-fg}the draft is empty: press e to edit the selected module{/gray-fg}'];
  const out: string[] = [];
  const outdated = outdatedDraft(s);
  for (const m of mods) {
    const d = s.draft[m]!;
    if (outdated.has(m)) {
      out.push(
        `{yellow-fg}${esc(m)} is now v${outdated.get(m)} live (edited from v${d.baseVersion}): applying will be refused as a conflict; x discards the draft{/yellow-fg}`,
      );
    }
    const patch = createTwoFilesPatch(m, m, d.baseText, d.text, `live v${d.baseVersion}`, 'draft', { context: 3 });
    for (const line of patch.split('\n').slice(1)) {
      if (line.startsWith('+++') || line.startsWith('---')) out.push(`{bold}${esc(line)}{/bold}`);
      else if (line.startsWith('+')) out.push(`{green-fg}${esc(line)}{/green-fg}`);
      else if (line.startsWith('-')) out.push(`{red-fg}${esc(line)}{/red-fg}`);
      else if (line.startsWith('@@')) out.push(`{cyan-fg}${esc(line)}{/cyan-fg}`);
      else out.push(esc(line));
    }
  }
  if (s.diagnostics.length) out.push('', '{red-fg}Last check:{/red-fg}', ...s.diagnostics.map((d) => esc(formatDiagnostic(d))));
  return out;
}

/** A rendered table's lines (without the final newline). */
const tableLines = (text: string): string[] => text.replace(/\n$/, '').split('\n');

/** Tagged lines for the main pane's current tab. */
export function mainLines(s: TuiState): string[] {
  switch (s.tab) {
    case 'source':
      return sourceLines(s);
    case 'exports':
      return exportLines(s);
    case 'history': {
      // The same tables as `livepatch history`.
      const q = s.status?.quarantined ?? [];
      const quarantined = q.length
        ? [
            '',
            '{red-fg}quarantined (not re-applied at start; livepatch quarantine HOST --reapply ID | --drop ID):{/red-fg}',
            ...tableLines(formatQuarantined(q)).map((l) => `{red-fg}${esc(l)}{/red-fg}`),
          ]
        : [];
      return [
        ...(s.history.length ? tableLines(formatHistory(s.history)).map(esc) : ['{gray-fg}no history yet{/gray-fg}']),
        ...quarantined,
      ];
    }
    case 'diff':
      return diffLines(s);
  }
}

export function mainLineCount(s: TuiState): number {
  return mainLines(s).length;
}
