/**
 * The TUI's view state as plain data, and `reduce(state, action) → state`, the only way it changes.
 * Pure: no blessed, no sockets, no clock. Views render a state; controllers turn keys and agent
 * replies into actions. Tested without a terminal (test/tui-state.test.ts).
 */
import type { Diagnostic, ExportsResult, GenerationSummary, ModuleVersionInfo, Role, SourceResult, StatusResult } from '../../shared';
import { TABS, type Action, type Focus, type Popup, type Tab } from './actions';
import { mainLineCount } from './content';
import { eventLine } from './format';
import { KEYMAP } from './keys';
import { visibleModules, rollbackTargets } from './selectors';

export type { Action, Focus, Popup, Tab } from './actions';

/** One module of the draft: the edited text and the live version it was written against. */
export interface DraftEntry {
  text: string;
  baseText: string;
  baseHash: string;
  baseVersion: number;
}

export interface LogLine {
  text: string;
  kind: 'patch' | 'rollback' | 'info' | 'error';
}

export interface ReplLine {
  text: string;
  kind: 'in' | 'out' | 'err';
}

export interface TuiState {
  host: string;
  name?: string;
  role?: Role;
  conn: 'connecting' | 'connected' | 'disconnected';
  attempt: number;
  connMessage?: string;
  connReason?: string;
  /** True while what is shown may be out of date (the connection dropped since it was fetched). */
  stale: boolean;
  status?: StatusResult;
  modules: ModuleVersionInfo[];
  history: GenerationSummary[];
  filter: string;
  filtering: boolean;
  selected?: string;
  tab: Tab;
  focus: Focus;
  /** First visible line of the main pane. */
  scroll: number;
  /** A line to highlight in the source view (set by jumping to a diagnostic). */
  mark?: { module: string; line: number };
  sources: Record<string, SourceResult>;
  exports: Record<string, ExportsResult>;
  draft: Record<string, DraftEntry>;
  diagnostics: Diagnostic[];
  log: LogLine[];
  logScroll: number;
  repl: { input: string; lines: ReplLine[]; pending: boolean };
  popup?: Popup;
  notice?: string;
  quit: boolean;
}

const LOG_MAX = 500;

/** Where the apply key offers to write the draft when the agent takes signed patch sets only. */
export const DRAFT_FILE = 'livepatch-draft.json';

/** Whether the agent accepts only signed patch sets (its status says so). */
export function signaturesRequired(s: Pick<TuiState, 'status'>): boolean {
  return s.status?.patching.signaturesRequired === true;
}
const REPL_MAX = 1000;

export function initialState(host: string): TuiState {
  return {
    host,
    conn: 'connecting',
    attempt: 0,
    stale: false,
    modules: [],
    history: [],
    filter: '',
    filtering: false,
    tab: 'source',
    focus: 'modules',
    scroll: 0,
    sources: {},
    exports: {},
    draft: {},
    diagnostics: [],
    log: [],
    logScroll: 0,
    repl: { input: '', lines: [], pending: false },
    quit: false,
  };
}

function focusRing(s: TuiState): Focus[] {
  return s.role === 'admin' ? ['modules', 'main', 'events', 'repl'] : ['modules', 'main', 'events'];
}

function pushLog(s: TuiState, line: LogLine): TuiState {
  return { ...s, log: [...s.log, line].slice(-LOG_MAX) };
}

/** Keep the selection on a visible module after the list or the filter changed. */
function fixSelection(s: TuiState): TuiState {
  const vis = visibleModules(s);
  if (s.selected && vis.some((m) => m.module === s.selected)) return s;
  return { ...s, selected: vis[0]?.module, scroll: 0 };
}

function clampScroll(s: TuiState, scroll: number): number {
  return Math.max(0, Math.min(scroll, mainLineCount(s) - 1));
}

function move(s: TuiState, delta: number): TuiState {
  if (s.focus === 'modules') {
    const vis = visibleModules(s);
    if (vis.length === 0) return s;
    const i = Math.max(
      0,
      vis.findIndex((m) => m.module === s.selected),
    );
    const next = vis[Math.max(0, Math.min(vis.length - 1, i + delta))]!;
    return next.module === s.selected ? s : { ...s, selected: next.module, scroll: 0, mark: undefined };
  }
  if (s.focus === 'main') return { ...s, scroll: clampScroll(s, s.scroll + delta) };
  // The log scrolls back from the newest line: moving up goes further back.
  if (s.focus === 'events') return { ...s, logScroll: Math.max(0, Math.min(s.log.length - 1, s.logScroll - delta)) };
  return s;
}

function popupMove(s: TuiState, delta: number): TuiState {
  const p = s.popup;
  if (p?.kind === 'rollback') {
    const n = rollbackTargets(s).length;
    return { ...s, popup: { ...p, choice: Math.max(0, Math.min(n - 1, p.choice + delta)) } };
  }
  if (p?.kind === 'help') return { ...s, popup: { ...p, scroll: Math.max(0, Math.min(KEYMAP.length - 1, p.scroll + delta)) } };
  if (p?.kind === 'diagnostics') {
    return { ...s, popup: { ...p, choice: Math.max(0, Math.min(s.diagnostics.length - 1, p.choice + delta)) } };
  }
  return s;
}

/** Line editing shared by the filter, the apply message and the REPL prompt. */
export function editLine(text: string, key: string, max = 4000): string {
  if (key === 'backspace') return text.slice(0, -1);
  if (key === 'space') return (text + ' ').slice(0, max);
  if (key.length === 1 && key >= ' ') return (text + key).slice(0, max);
  return text;
}

export function reduce(s: TuiState, a: Action): TuiState {
  switch (a.type) {
    case 'connecting':
      return { ...s, conn: 'connecting', attempt: a.attempt };
    case 'connected':
      return pushLog(
        { ...s, conn: 'connected', name: a.name, role: a.role, attempt: 0, connMessage: undefined, connReason: undefined },
        { text: `connected to ${s.host} as ${a.name} (${a.role})`, kind: 'info' },
      );
    case 'disconnected': {
      const text = `disconnected: ${a.reason}; reconnecting in ${Math.ceil(a.retryInMs / 1000)} s`;
      // Log a drop once, and each retry only when its reason changes, so a long outage is one line.
      const repeat = s.stale && s.connReason === a.reason;
      const next = { ...s, conn: 'disconnected' as const, stale: true, connMessage: text, connReason: a.reason };
      return repeat ? next : pushLog(next, { text, kind: 'error' });
    }
    case 'snapshot': {
      const byModule = new Map(a.versions.map((m) => [m.module, m.hash]));
      const keep = <T>(rec: Record<string, T & { hash?: string }>) =>
        Object.fromEntries(Object.entries(rec).filter(([m, v]) => byModule.has(m) && (v.hash === undefined || v.hash === byModule.get(m))));
      const next = { ...s, status: a.status, modules: a.versions, history: a.history, stale: false, sources: keep(s.sources) };
      // Exports carry no hash: drop them all so the tab refetches after any change.
      return fixSelection({ ...next, exports: {} });
    }
    case 'status':
      return { ...s, status: a.status };
    case 'source':
      return { ...s, sources: { ...s.sources, [a.result.module]: a.result } };
    case 'exports':
      return { ...s, exports: { ...s.exports, [a.result.module]: a.result } };
    case 'event':
      return a.event.event === 'committed'
        ? pushLog(s, { text: eventLine(a.event), kind: a.event.kind })
        : pushLog(s, { text: eventLine(a.event), kind: 'info' });
    case 'log':
      return pushLog(s, { text: a.text, kind: 'info' });
    case 'move':
      return move(s, a.delta * (a.page > 0 ? a.page : 1));
    case 'open':
      return s.selected ? { ...s, tab: 'source', focus: 'main', scroll: 0 } : s;
    case 'tab':
      return { ...s, tab: a.tab, scroll: 0 };
    case 'tabStep': {
      const i = TABS.indexOf(s.tab);
      return { ...s, tab: TABS[(i + a.delta + TABS.length) % TABS.length]!, scroll: 0 };
    }
    case 'focus': {
      const ring = focusRing(s);
      const i = Math.max(0, ring.indexOf(s.focus));
      return { ...s, focus: ring[(i + a.delta + ring.length) % ring.length]! };
    }
    case 'filterStart':
      return { ...s, filtering: true, focus: 'modules' };
    case 'filterKey': {
      if (a.key === 'enter') return { ...s, filtering: false };
      if (a.key === 'escape') return fixSelection({ ...s, filtering: false, filter: '' });
      return fixSelection({ ...s, filter: editLine(s.filter, a.key, 200) });
    }
    case 'draftSet': {
      const draft = { ...s.draft };
      if (a.text === a.live.source) delete draft[a.module];
      else draft[a.module] = { text: a.text, baseText: a.live.source, baseHash: a.live.hash, baseVersion: a.live.version };
      const n = Object.keys(draft).length;
      return {
        ...s,
        draft,
        diagnostics: [],
        notice: n ? `draft: ${n} module${n > 1 ? 's' : ''} changed (c check, a apply, x discard)` : 'no change',
      };
    }
    case 'draftDiscard':
      return { ...s, draft: {}, diagnostics: [], mark: undefined, popup: undefined, notice: 'draft discarded' };
    case 'checked': {
      const d = a.result.diagnostics;
      if (a.result.ok && d.length === 0) {
        return {
          ...s,
          diagnostics: [],
          popup: {
            kind: 'message',
            title: 'Check passed',
            lines: [`${a.result.checkedFiles} files type-checked in ${a.result.durationMs} ms: no problems.`],
            error: false,
          },
        };
      }
      return { ...s, diagnostics: d, popup: { kind: 'diagnostics', choice: 0 } };
    }
    case 'rejected':
      if (a.diagnostics.length)
        return { ...s, diagnostics: a.diagnostics, popup: { kind: 'diagnostics', choice: 0 }, notice: `${a.title}: ${a.message}` };
      return { ...s, popup: { kind: 'message', title: a.title, lines: [a.message], error: true } };
    case 'applied': {
      const r = a.result;
      const lines = [
        `Generation ${r.generation} is live (was ${r.previousGeneration}).`,
        ...r.changed.map((c) => `  ${c.module} → v${c.version}`),
      ];
      const next = {
        ...s,
        popup: { kind: 'message' as const, title: a.kind === 'patch' ? 'Patch applied' : 'Rolled back', lines, error: false },
      };
      return a.kind === 'patch' ? { ...next, draft: {}, diagnostics: [], mark: undefined, notice: undefined } : next;
    }
    case 'popup':
      return { ...s, popup: a.popup };
    case 'popupMove':
      return popupMove(s, a.delta);
    case 'popupKey':
      if (s.popup?.kind === 'apply') return { ...s, popup: { ...s.popup, message: editLine(s.popup.message, a.key) } };
      if (s.popup?.kind === 'signed-only') return { ...s, popup: { ...s.popup, path: editLine(s.popup.path, a.key, 1024) } };
      return s;
    case 'exported': {
      if (a.error !== undefined) return { ...s, popup: { kind: 'message', title: 'Draft not written', lines: [a.error], error: true } };
      // A host that checks on the client (no sources there) runs the signed JavaScript: sign it too.
      const clientChecks = s.status?.patching.checks === 'client';
      const lines = [
        `Wrote ${a.modules.join(', ')} to ${a.path} (with the live hashes they were edited from).`,
        'Sign it where the signing key lives (your CI), then apply the signed set:',
        `  livepatch sign ${a.path} --key livepatch-signing.key -m MESSAGE${clientChecks ? ' --compile' : ''} --out signed.json`,
        `  livepatch apply ${s.host} signed.json${clientChecks ? ' --check-here' : ''}`,
        ...(clientChecks
          ? ['This agent type-checks on the client and runs the JavaScript sent: the signature must cover it (--compile).']
          : []),
        'The draft stays here until you discard it (x).',
      ];
      return pushLog(
        { ...s, popup: { kind: 'message', title: 'Draft written for signing', lines, error: false } },
        { text: `draft written to ${a.path} for signing`, kind: 'info' },
      );
    }
    case 'jump': {
      const d = a.diagnostic;
      if (!d.file) return { ...s, popup: undefined };
      const line = d.line ?? 1;
      const next: TuiState = {
        ...s,
        popup: undefined,
        filter: '',
        selected: d.file,
        tab: 'source',
        focus: 'main',
        mark: { module: d.file, line },
      };
      return { ...next, scroll: Math.max(0, line - 6) };
    }
    case 'notice':
      return { ...s, notice: a.text };
    case 'replKey':
      return { ...s, repl: { ...s.repl, input: editLine(s.repl.input, a.key, 64 * 1024) } };
    case 'replSubmit': {
      const code = s.repl.input.trim();
      if (!code || s.repl.pending) return s;
      return {
        ...s,
        repl: { input: '', pending: true, lines: [...s.repl.lines, { text: `> ${code}`, kind: 'in' as const }].slice(-REPL_MAX) },
      };
    }
    case 'replOutput': {
      const add = a.lines.map((text) => ({ text, kind: a.error ? ('err' as const) : ('out' as const) }));
      return { ...s, repl: { ...s.repl, pending: false, lines: [...s.repl.lines, ...add].slice(-REPL_MAX) } };
    }
    case 'quit':
      return { ...s, quit: true };
  }
}
