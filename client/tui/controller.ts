/**
 * Keys → handlers. Every keypress comes here as one key name (keys.ts `keyName`); who gets it is
 * decided from the state: an open popup first, then the filter field, then the REPL prompt, else
 * the global keymap. Handlers dispatch actions and start effects; they never touch widgets.
 */
import type { Action } from './actions';
import type { Effects, StoreLike } from './effects';
import { bindingFor, offered, type KeyBinding, type KeyId } from './keys';
import { draftModules, rollbackTargets } from './selectors';
import { DRAFT_FILE, signaturesRequired } from './state';

export interface ControllerDeps {
  store: StoreLike;
  effects: Effects;
  /** Lines in a page of the focused pane. */
  pageSize(): number;
  /** Open the selected module in the editor (needs the screen, so the app supplies it). */
  edit(module: string): Promise<void>;
}

type GlobalId = Exclude<KeyId, 'confirm' | 'cancel' | 'choiceUp' | 'choiceDown'>;

export class Controller {
  #d: ControllerDeps;
  /** One handler per global binding: the Record type makes a missing one a compile error. */
  #handlers: Record<GlobalId, () => void>;

  constructor(deps: ControllerDeps) {
    this.#d = deps;
    const go = (a: Action) => () => this.#dispatch(a);
    const s = () => this.#d.store.state;
    this.#handlers = {
      help: go({ type: 'popup', popup: { kind: 'help', scroll: 0 } }),
      quit: () =>
        draftModules(s()).length ? this.#dispatch({ type: 'popup', popup: { kind: 'confirm-quit' } }) : this.#dispatch({ type: 'quit' }),
      focus: go({ type: 'focus', delta: 1 }),
      focusBack: go({ type: 'focus', delta: -1 }),
      up: go({ type: 'move', delta: -1, page: 0 }),
      down: go({ type: 'move', delta: 1, page: 0 }),
      pageUp: () => this.#dispatch({ type: 'move', delta: -1, page: this.#d.pageSize() }),
      pageDown: () => this.#dispatch({ type: 'move', delta: 1, page: this.#d.pageSize() }),
      open: go({ type: 'open' }),
      filter: go({ type: 'filterStart' }),
      prevTab: go({ type: 'tabStep', delta: -1 }),
      nextTab: go({ type: 'tabStep', delta: 1 }),
      tabSource: go({ type: 'tab', tab: 'source' }),
      tabExports: go({ type: 'tab', tab: 'exports' }),
      tabHistory: go({ type: 'tab', tab: 'history' }),
      tabDiff: go({ type: 'tab', tab: 'diff' }),
      refresh: () => void this.#d.effects.refresh(),
      problems: () =>
        s().diagnostics.length
          ? this.#dispatch({ type: 'popup', popup: { kind: 'diagnostics', choice: 0 } })
          : this.#notice('no diagnostics: press c to check the draft'),
      edit: () => {
        const m = s().selected;
        if (!m) return this.#notice('select a module first');
        void this.#d.edit(m);
      },
      check: () => void this.#d.effects.check(),
      apply: () => {
        if (!draftModules(s()).length) return this.#notice('the draft is empty: press e to edit a module first');
        // An agent with trusted keys refuses unsigned sets: offer the file to sign instead of a doomed apply.
        this.#dispatch({
          type: 'popup',
          popup: signaturesRequired(s()) ? { kind: 'signed-only', path: DRAFT_FILE } : { kind: 'apply', message: '' },
        });
      },
      rollback: () => this.#dispatch({ type: 'popup', popup: { kind: 'rollback', choice: 0 } }),
      discard: () =>
        draftModules(s()).length
          ? this.#dispatch({ type: 'popup', popup: { kind: 'confirm-discard' } })
          : this.#notice('the draft is empty'),
    };
  }

  #dispatch(a: Action): void {
    this.#d.store.dispatch(a);
  }

  #notice(text: string): void {
    this.#dispatch({ type: 'notice', text });
  }

  /** Handle one key name. */
  key(key: string): void {
    const st = this.#d.store.state;
    if (st.popup) return this.#popupKey(key);
    if (key === 'C-c') return this.#handlers.quit();
    if (st.filtering) return this.#dispatch({ type: 'filterKey', key });
    if (st.focus === 'repl' && this.#replKey(key)) return;
    const b = bindingFor(key, 'global') as (KeyBinding & { id: GlobalId }) | undefined;
    if (!b) return;
    if (!offered(b, st.role)) {
      return this.#notice(`"${key}" needs role ${b.needs}; this token's role is ${st.role ?? 'unknown'}: ${b.help}`);
    }
    if (st.notice) this.#dispatch({ type: 'notice', text: undefined });
    this.#handlers[b.id]();
  }

  /** The REPL prompt takes text keys; returns false for keys it leaves to the keymap. */
  #replKey(key: string): boolean {
    if (key === 'tab' || key === 'S-tab') return false;
    if (key === 'escape') this.#dispatch({ type: 'focus', delta: 1 });
    else if (key === 'enter') {
      const code = this.#d.store.state.repl.input.trim();
      this.#dispatch({ type: 'replSubmit' });
      if (code && this.#d.store.state.repl.pending) void this.#d.effects.evaluate(code);
    } else this.#dispatch({ type: 'replKey', key });
    return true;
  }

  #popupKey(key: string): void {
    const st = this.#d.store.state;
    const p = st.popup!;
    // C-c works even while the agent is busy, so a hung request cannot trap the user.
    if (key === 'C-c' && p.kind !== 'confirm-quit') {
      this.#dispatch({ type: 'popup', popup: undefined });
      return this.#handlers.quit();
    }
    if (p.kind === 'busy') return;
    const close = () => this.#dispatch({ type: 'popup', popup: undefined });
    // The apply and signed-only popups have a text field: a printable key is text there, so only the
    // named keys of the popup bindings (enter, escape) are commands.
    if (p.kind === 'apply' || p.kind === 'signed-only') {
      const named = key.length > 1 ? bindingFor(key, 'popup')?.id : undefined;
      if (named === 'confirm') return void (p.kind === 'apply' ? this.#d.effects.apply(p.message) : this.#d.effects.exportDraft(p.path));
      if (named === 'cancel') return close();
      return this.#dispatch({ type: 'popupKey', key });
    }
    const id = bindingFor(key, 'popup')?.id;
    if (id === 'choiceUp' || id === 'choiceDown') return this.#dispatch({ type: 'popupMove', delta: id === 'choiceUp' ? -1 : 1 });
    if (id === 'cancel') return close();
    if (id !== 'confirm' && !(key === 'C-c' && p.kind === 'confirm-quit')) return;
    switch (p.kind) {
      case 'rollback': {
        const target = rollbackTargets(st)[p.choice];
        return target ? this.#dispatch({ type: 'popup', popup: { kind: 'confirm-rollback', to: target.generation } }) : close();
      }
      case 'confirm-rollback':
        return void this.#d.effects.rollback(p.to);
      case 'confirm-quit':
        return this.#dispatch({ type: 'quit' });
      case 'confirm-discard':
        return this.#dispatch({ type: 'draftDiscard' });
      case 'diagnostics': {
        const d = st.diagnostics[p.choice];
        return d ? this.#dispatch({ type: 'jump', diagnostic: d }) : close();
      }
      default:
        return close();
    }
  }
}
