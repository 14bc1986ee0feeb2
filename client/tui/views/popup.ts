/**
 * The modal popup's view: title and lines for each popup kind (help, apply confirmation with a
 * message field, rollback target chooser, confirmations, diagnostics list, progress, results).
 */
import { formatDiagnostic } from '../../../shared';
import { KEYMAP, keysLabel, offered, type KeyBinding } from '../keys';
import { clock } from '../format';
import { esc } from '../highlight';
import type { Layout } from '../layout';
import { draftModules, outdatedDraft, rollbackTargets } from '../selectors';
import type { TuiState } from '../state';

export interface PopupView {
  title: string;
  lines: string[];
  /** Lines always shown under the (possibly scrolled) body: the popup's keys. */
  footer?: string[];
  /** First body line to show when the body is taller than the screen. */
  top?: number;
  /** Border colour. */
  colour: string;
}

function choiceLines<T>(items: T[], choice: number, show: (t: T) => string): string[] {
  return items.map((it, i) => (i === choice ? `{inverse}› ${esc(show(it))}{/inverse}` : `  ${esc(show(it))}`));
}

function helpLines(s: TuiState): string[] {
  return (KEYMAP as readonly KeyBinding[]).map((b) => {
    const text = `${keysLabel(b).padEnd(16)} ${b.help}`;
    return offered(b, s.role) ? esc(text) : `{gray-fg}${esc(text)} (needs role ${b.needs}){/gray-fg}`;
  });
}

export function popupView(s: TuiState): PopupView | undefined {
  const p = s.popup;
  if (!p) return undefined;
  switch (p.kind) {
    case 'help':
      return {
        title: ' Keys (escape closes) ',
        lines: helpLines(s),
        top: p.scroll,
        footer: ['{gray-fg}↑↓ scroll{/gray-fg}'],
        colour: 'cyan',
      };
    case 'apply':
      return {
        title: ' Apply the draft? ',
        colour: 'yellow',
        lines: [
          'Modules in this patch:',
          ...draftModules(s).map((m) => {
            const now = outdatedDraft(s).get(m);
            const warn = now === undefined ? '' : ` {yellow-fg}live is now v${now}: expect a conflict{/yellow-fg}`;
            return `  ${esc(m)} (from v${s.draft[m]!.baseVersion})${warn}`;
          }),
          '',
          'Message:',
          `{inverse} ${esc(p.message)}_ {/inverse}`,
          '',
          '{bold}enter{/bold} apply   {bold}escape{/bold} cancel',
        ],
      };
    case 'signed-only':
      return {
        title: ' Signed patch sets only ',
        colour: 'yellow',
        lines: [
          'This agent accepts only patch sets signed by a key it trusts',
          '(LIVEPATCH_TRUSTED_KEYS), so the draft cannot be applied from here:',
          'drafts must be signed in CI, where the signing key is kept.',
          '',
          `Write the draft (${esc(draftModules(s).join(', '))}) as a patch file for signing?`,
          'File:',
          `{inverse} ${esc(p.path)}_ {/inverse}`,
          '',
          '{bold}enter{/bold} write the file   {bold}escape{/bold} cancel',
        ],
      };
    case 'rollback': {
      const targets = rollbackTargets(s);
      const lines = targets.length
        ? choiceLines(
            targets,
            p.choice,
            (g) => `gen ${g.generation}  ${g.kind}  ${clock(g.time)}  ${g.who ?? '-'}${g.message ? `  "${g.message}"` : ''}`,
          )
        : ['{gray-fg}no earlier generation to roll back to{/gray-fg}'];
      return {
        title: ` Roll back from gen ${s.status?.currentGeneration ?? '?'} to… `,
        colour: 'yellow',
        lines,
        top: p.choice - 3,
        footer: ['', '{bold}↑↓{/bold} choose  {bold}enter{/bold} continue  {bold}escape{/bold} cancel'],
      };
    }
    case 'confirm-rollback':
      return {
        title: ' Confirm rollback ',
        colour: 'red',
        lines: [
          `Roll back to generation ${p.to}?`,
          'Requests in flight finish on their generation.',
          '',
          '{bold}y{/bold}/{bold}enter{/bold} roll back   {bold}n{/bold}/{bold}escape{/bold} cancel',
        ],
      };
    case 'confirm-quit':
      return {
        title: ' Quit? ',
        colour: 'red',
        lines: [
          `The draft (${draftModules(s).join(', ')}) is not applied and will be lost.`,
          '',
          '{bold}y{/bold} quit   {bold}n{/bold}/{bold}escape{/bold} stay',
        ],
      };
    case 'confirm-discard':
      return {
        title: ' Discard the draft? ',
        colour: 'red',
        lines: [
          `Discard the edits to ${draftModules(s).join(', ')}?`,
          '',
          '{bold}y{/bold} discard   {bold}n{/bold}/{bold}escape{/bold} keep',
        ],
      };
    case 'diagnostics':
      return {
        title: ` ${s.diagnostics.length} problem${s.diagnostics.length === 1 ? '' : 's'} `,
        colour: 'red',
        lines: choiceLines(s.diagnostics, p.choice, formatDiagnostic),
        top: p.choice - 3,
        footer: ['', '{bold}↑↓{/bold} choose  {bold}enter{/bold} jump to the line   {bold}escape{/bold} close'],
      };
    case 'busy':
      return { title: ` ${esc(p.title)} `, colour: 'yellow', lines: [esc(p.message)] };
    case 'message':
      return {
        title: ` ${esc(p.title)} `,
        colour: p.error ? 'red' : 'green',
        lines: [...p.lines.map(esc), '', '{bold}enter{/bold}/{bold}escape{/bold} close'],
      };
  }
}

/** Show or hide the popup box. */
export function renderPopup(l: Layout, s: TuiState): void {
  const v = popupView(s);
  if (!v) {
    l.popup.hide();
    return;
  }
  // Fit the box to its content (within the screen), so short messages get a small popup.
  const rows = (l.screen.height as number) - 4;
  const cols = (l.screen.width as number) - 4;
  const footer = v.footer ?? [];
  const all = [...v.lines, ...footer];
  const widest = Math.max(v.title.length, ...all.map((x) => x.replace(/\{[^{}]*\}/g, '').length));
  // A body taller than the screen shows a window starting at `top`; the footer always shows.
  const room = Math.max(1, rows - 2 - footer.length);
  const top = Math.max(0, Math.min(v.top ?? 0, v.lines.length - room));
  const body = v.lines.slice(top, top + room);
  l.popup.height = Math.max(5, Math.min(rows, body.length + footer.length + 2));
  l.popup.width = Math.max(40, Math.min(cols, widest + 4));
  l.popup.setLabel(v.title);
  (l.popup.style as { border?: { fg: string } }).border = { fg: v.colour };
  l.popup.setContent([...body, ...footer].join('\n'));
  l.popup.show();
  l.popup.setFront();
}
