/**
 * The keymap of `livepatch attach`, defined once. The controller dispatches from it, the `?` overlay
 * lists it, and the README's "Terminal UI" table is generated from it (a test keeps them equal).
 *
 * Key names are blessed's `key.full` names (`enter`, `tab`, `C-c`, `pagedown`) or the printable
 * character itself (`R`, `?`, `[`), as produced by `keyName()` below.
 */
import { roleAllows, type Role } from '../../shared';

/** Where a binding applies: everywhere (unless a text field has the keyboard), or inside popups. */
export type KeyScope = 'global' | 'popup';

export interface KeyBinding {
  /** Handler id: the controller has exactly one handler per id. */
  readonly id: string;
  readonly keys: readonly string[];
  readonly help: string;
  readonly scope: KeyScope;
  /** Least role needed; bindings above the session's role are not offered. */
  readonly needs?: Role;
}

export const KEYMAP = [
  { id: 'help', keys: ['?'], help: 'Show every key', scope: 'global' },
  { id: 'quit', keys: ['q', 'C-c'], help: 'Quit (asks first when the draft is not applied)', scope: 'global' },
  { id: 'focus', keys: ['tab'], help: 'Cycle focus: modules, main pane, event log, REPL (admins)', scope: 'global' },
  { id: 'focusBack', keys: ['S-tab'], help: 'Cycle focus backwards', scope: 'global' },
  { id: 'up', keys: ['up', 'k'], help: 'Select the previous module / scroll up', scope: 'global' },
  { id: 'down', keys: ['down', 'j'], help: 'Select the next module / scroll down', scope: 'global' },
  { id: 'pageUp', keys: ['pageup'], help: 'Scroll the focused pane a page up', scope: 'global' },
  { id: 'pageDown', keys: ['pagedown', 'space'], help: 'Scroll the focused pane a page down', scope: 'global' },
  { id: 'open', keys: ['enter'], help: "Show the selected module's source", scope: 'global' },
  { id: 'filter', keys: ['/'], help: 'Filter modules by name (enter keeps, escape clears)', scope: 'global' },
  { id: 'prevTab', keys: ['['], help: 'Previous tab', scope: 'global' },
  { id: 'nextTab', keys: [']'], help: 'Next tab', scope: 'global' },
  { id: 'tabSource', keys: ['1'], help: 'Source tab', scope: 'global' },
  { id: 'tabExports', keys: ['2'], help: 'Exports tab', scope: 'global' },
  { id: 'tabHistory', keys: ['3'], help: 'History tab', scope: 'global' },
  { id: 'tabDiff', keys: ['4'], help: 'Diff tab (the draft against live)', scope: 'global' },
  { id: 'refresh', keys: ['R'], help: 'Refresh everything from the agent', scope: 'global' },
  { id: 'problems', keys: ['p'], help: "List the last check's diagnostics (enter jumps to the line)", scope: 'global' },
  { id: 'edit', keys: ['e'], help: 'Edit the selected module in $EDITOR; the edit joins the draft', scope: 'global', needs: 'patch' },
  { id: 'check', keys: ['c'], help: 'Type-check the draft against the live program', scope: 'global', needs: 'patch' },
  {
    id: 'apply',
    keys: ['a'],
    help: 'Apply the draft (confirm, with a message); if the agent takes signed sets only, write it as a file to sign',
    scope: 'global',
    needs: 'patch',
  },
  { id: 'rollback', keys: ['r'], help: 'Roll back to a chosen generation (confirm)', scope: 'global', needs: 'patch' },
  { id: 'discard', keys: ['x'], help: 'Discard the draft (confirm)', scope: 'global', needs: 'patch' },
  { id: 'confirm', keys: ['enter', 'y'], help: 'Popup: confirm / choose (in a text field: enter only)', scope: 'popup' },
  {
    id: 'cancel',
    keys: ['escape', 'n', 'q'],
    help: 'Popup: cancel (in a text field: escape only); escape also leaves the filter and the REPL prompt',
    scope: 'popup',
  },
  { id: 'choiceUp', keys: ['up', 'k'], help: 'Popup: previous choice', scope: 'popup' },
  { id: 'choiceDown', keys: ['down', 'j'], help: 'Popup: next choice', scope: 'popup' },
] as const satisfies readonly KeyBinding[];

export type KeyId = (typeof KEYMAP)[number]['id'];

/** The binding for a key name in a scope, if any. */
export function bindingFor(key: string, scope: KeyScope): KeyBinding | undefined {
  return (KEYMAP as readonly KeyBinding[]).find((b) => b.scope === scope && b.keys.includes(key));
}

/** True when `role` may use the binding. */
export function offered(b: KeyBinding, role: Role | undefined): boolean {
  if (!b.needs) return true;
  if (!role) return false;
  return roleAllows(role, b.needs);
}

const NAMED = /^(enter|tab|S-tab|escape|up|down|left|right|pageup|pagedown|home|end|backspace|delete|space|C-.|M-.)$/;

/**
 * blessed's (ch, key) → one key name. Enter arrives twice from blessed ('enter' and 'return'), so
 * 'return' is dropped (undefined). Printable characters are their own name, so `R` is not `S-r`.
 */
export function keyName(ch: string | undefined, key: { full?: string; name?: string } | undefined): string | undefined {
  const full = key?.full;
  if (key?.name === 'return') return undefined;
  if (full && NAMED.test(full)) return full;
  if (ch && ch.length === 1 && ch >= ' ' && ch !== '\x7f') return ch;
  return full;
}

/** Display form of a binding's keys: `q, C-c`. */
export function keysLabel(b: KeyBinding): string {
  return b.keys.join(', ');
}

/** The README table (Markdown), generated from KEYMAP. */
export function keymapMarkdown(): string {
  const rows = (KEYMAP as readonly KeyBinding[]).map((b) => {
    const keys = b.keys.map((k) => '`' + (k === '|' ? '\\|' : k) + '`').join(' ');
    return `| ${keys} | ${b.help}${b.needs ? ` (role ${b.needs})` : ''} |`;
  });
  return ['| Key | Action |', '| --- | --- |', ...rows].join('\n');
}
