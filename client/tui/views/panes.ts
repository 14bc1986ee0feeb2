/**
 * Views for the fixed panes: status bar, modules list, main pane, event log, REPL and the hint line.
 * Each takes the state (and a height) and returns what to show; `renderPanes` puts it in the boxes.
 * Views only read state: no requests, no dispatching.
 */
import { KEYMAP, offered, type KeyBinding } from '../keys';
import { mainLines } from '../content';
import { clock, liveGenerations } from '../format';
import { esc } from '../highlight';
import type { Layout } from '../layout';
import { innerHeight } from '../layout';
import { draftModules, visibleModules } from '../selectors';
import { TABS, type Tab } from '../actions';
import type { TuiState } from '../state';

const TAB_TITLES: Record<Tab, string> = { source: 'Source', exports: 'Exports', history: 'History', diff: 'Diff' };

export function statusText(s: TuiState): string {
  const conn =
    s.conn === 'connected'
      ? '{green-fg}● connected{/green-fg}'
      : s.conn === 'connecting'
        ? `{yellow-fg}◌ connecting${s.attempt ? ` (attempt ${s.attempt})` : ''}{/yellow-fg}`
        : '{red-fg}{bold}✖ DISCONNECTED{/bold}{/red-fg}';
  const parts = [
    ` {bold}livepatch{/bold} ${esc(s.host)}`,
    `${esc(s.name ?? '?')} (${s.role ?? '?'})`,
    `gen ${s.status?.currentGeneration ?? '?'}`,
    `live: ${s.status ? liveGenerations(s.status.liveGenerations) : '?'}`,
    conn + (s.stale ? ' {red-fg}[stale]{/red-fg}' : ''),
  ];
  if (s.status?.watch) parts.push(`{yellow-fg}watching g${s.status.watch.generation} until ${clock(s.status.watch.until)}{/yellow-fg}`);
  if (s.status && !s.status.patching.enabled)
    parts.push(`{red-fg}patching disabled${s.status.patching.reason ? `: ${esc(s.status.patching.reason)}` : ''}{/red-fg}`);
  if (s.status?.drift.length) parts.push(`{red-fg}drift: ${s.status.drift.length}{/red-fg}`);
  if (s.status?.quarantined?.length) parts.push(`{red-fg}quarantined: ${s.status.quarantined.length}{/red-fg}`);
  if (s.status?.journal?.unreadable.length) parts.push(`{red-fg}journal: ${s.status.journal.unreadable.length} unreadable{/red-fg}`);
  if (s.status?.journal && !s.status.journal.replay) parts.push('{yellow-fg}replay off{/yellow-fg}');
  if (s.status?.patching.signaturesRequired) parts.push('signed sets only');
  const n = draftModules(s).length;
  if (n) parts.push(`{yellow-fg}draft: ${n} module${n > 1 ? 's' : ''}{/yellow-fg}`);
  return parts.join(' │ ');
}

/** Modules list lines, scrolled so the selection stays visible. Markers: * patched, ✎ in the draft. */
export function modulesView(s: TuiState, height: number): { label: string; lines: string[] } {
  const vis = visibleModules(s);
  const idx = vis.findIndex((m) => m.module === s.selected);
  const offset = Math.max(0, idx - height + 1);
  const lines = vis.slice(offset, offset + height).map((m) => {
    const mark = s.draft[m.module] ? '{yellow-fg}✎{/yellow-fg}' : m.patched ? '{magenta-fg}*{/magenta-fg}' : ' ';
    const text = `${mark} ${esc(m.module)} {gray-fg}v${m.version}{/gray-fg}`;
    if (m.module !== s.selected) return text;
    return s.focus === 'modules' ? `{inverse}${text}{/inverse}` : `{bold}${text}{/bold}`;
  });
  if (vis.length === 0) lines.push(s.modules.length ? '{gray-fg}no module matches{/gray-fg}' : '{gray-fg}(no modules yet){/gray-fg}');
  const filter = s.filtering || s.filter ? ` /${esc(s.filter)}${s.filtering ? '_' : ''}` : '';
  return { label: ` Modules ${vis.length}/${s.modules.length}${filter}${s.stale ? ' (stale)' : ''} `, lines };
}

export function mainView(s: TuiState, height: number): { label: string; lines: string[] } {
  const tabs = TABS.map((t, i) => (t === s.tab ? `{inverse}${i + 1} ${TAB_TITLES[t]}{/inverse}` : `${i + 1} ${TAB_TITLES[t]}`)).join(' ');
  let what = '';
  if ((s.tab === 'source' || s.tab === 'exports') && s.selected) {
    const live = s.modules.find((m) => m.module === s.selected);
    what = ` ─ ${esc(s.selected)}${live ? ` v${live.version}` : ''}${s.draft[s.selected] && s.tab === 'source' ? ' {yellow-fg}[draft]{/yellow-fg}' : ''}`;
  }
  const all = mainLines(s);
  const start = Math.max(0, Math.min(s.scroll, all.length - 1));
  return { label: ` ${tabs}${what}${s.stale ? ' {red-fg}(stale){/red-fg}' : ''} `, lines: all.slice(start, start + height) };
}

export function logView(s: TuiState, height: number): string[] {
  const colour = { patch: 'green', rollback: 'yellow', info: 'white', error: 'red' } as const;
  // logScroll counts back from the newest line so new events stay visible by default.
  const end = Math.max(0, s.log.length - s.logScroll);
  return s.log.slice(Math.max(0, end - height), end).map((l) => `{${colour[l.kind]}-fg}${esc(l.text)}{/${colour[l.kind]}-fg}`);
}

export function replView(s: TuiState, height: number): string[] {
  const colour = { in: 'cyan', out: 'white', err: 'red' } as const;
  const lines = s.repl.lines.map((l) => `{${colour[l.kind]}-fg}${esc(l.text)}{/${colour[l.kind]}-fg}`);
  const prompt = s.repl.pending
    ? '{gray-fg}… evaluating{/gray-fg}'
    : `{cyan-fg}>{/cyan-fg} ${esc(s.repl.input)}${s.focus === 'repl' ? '_' : ''}`;
  return [...lines.slice(-(height - 1)), prompt];
}

/** Bottom line: a notice if any, else the keys offered to this role. */
export function hintText(s: TuiState): string {
  if (s.notice) return ` ${esc(s.notice)}`;
  if (s.conn !== 'connected' && s.connMessage) return ` {red-fg}${esc(s.connMessage)}{/red-fg}`;
  const show = (KEYMAP as readonly KeyBinding[]).filter(
    (b) =>
      b.scope === 'global' &&
      ['help', 'quit', 'filter', 'edit', 'check', 'apply', 'rollback', 'discard'].includes(b.id) &&
      offered(b, s.role),
  );
  const tail = s.role === 'read' ? '  {gray-fg}(read-only token: patching not offered){/gray-fg}' : '';
  return (
    ' ' + show.map((b) => `{bold}${esc(b.keys[0]!)}{/bold} ${b.id}`).join('  ') + '  {bold}[ ]{/bold} tabs  {bold}tab{/bold} focus' + tail
  );
}

function border(box: { style: unknown }, focused: boolean): void {
  (box.style as { border?: { fg: string } }).border = { fg: focused ? 'cyan' : 'white' };
}

/** Put the state into the fixed panes. */
export function renderPanes(l: Layout, s: TuiState): void {
  l.status.setContent(statusText(s));
  const mv = modulesView(s, innerHeight(l.modules));
  l.modules.setLabel(mv.label);
  l.modules.setContent(mv.lines.join('\n'));
  const main = mainView(s, innerHeight(l.main));
  l.main.setLabel(main.label);
  l.main.setContent(main.lines.join('\n'));
  l.log.setLabel(` Events${s.logScroll ? ` (↑${s.logScroll})` : ''} `);
  l.log.setContent(logView(s, innerHeight(l.log)).join('\n'));
  if (!l.repl.hidden) l.repl.setContent(replView(s, innerHeight(l.repl)).join('\n'));
  l.hint.setContent(hintText(s));
  border(l.modules, s.focus === 'modules');
  border(l.main, s.focus === 'main');
  border(l.log, s.focus === 'events');
  border(l.repl, s.focus === 'repl');
}
