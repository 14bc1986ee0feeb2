/**
 * Wires the TUI together: the store (state + reduce), the agent link, effects, the controller and
 * the blessed layout. Renders are coalesced to one per tick; after each change the effects load
 * whatever the new state shows but does not have yet (a module's source or exports).
 */
import type { AgentEvent } from '../../shared';
import type { Action } from './actions';
import { Controller } from './controller';
import { editText } from './editor';
import { Effects, type StoreLike } from './effects';
import { keyName } from './keys';
import { createLayout, innerHeight, type Layout } from './layout';
import { AgentLink, type Connector } from './link';
import { initialState, reduce, type TuiState } from './state';
import { draftModules } from './selectors';
import { renderPanes } from './views/panes';
import { renderPopup } from './views/popup';

/** In-flight counts change with traffic, not with events: the status bar polls for them. */
const STATUS_POLL_MS = 2000;

/** State holder: the one place `reduce` is called. */
export class Store implements StoreLike {
  state: TuiState;
  #onChange: () => void;

  constructor(state: TuiState, onChange: () => void) {
    this.state = state;
    this.#onChange = onChange;
  }

  dispatch(a: Action): void {
    this.state = reduce(this.state, a);
    this.#onChange();
  }
}

/** A running TUI; `done` resolves when the user quits. */
export class TuiApp {
  readonly store: Store;
  readonly link: AgentLink;
  readonly effects: Effects;
  layout: Layout | undefined;
  #scheduled = false;
  #refreshTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #finish: (() => void) | undefined;
  readonly done: Promise<void>;

  constructor(host: string, connect: Connector) {
    this.done = new Promise((r) => (this.#finish = r));
    this.store = new Store(initialState(host), () => this.#schedule());
    this.link = new AgentLink(connect, {
      dispatch: (a) => this.store.dispatch(a),
      onConnected: () => {
        this.effects.resetRepl();
        void this.effects.refresh();
      },
      onEvent: (e) => this.#onEvent(e),
    });
    this.effects = new Effects(this.store, this.link);
  }

  /** Connect (rejecting when the first connection fails), then open the screen. */
  async start(): Promise<void> {
    await this.link.start();
    const layout = createLayout(`livepatch ${this.store.state.host}`, this.store.state.role === 'admin');
    this.layout = layout;
    const controller = new Controller({
      store: this.store,
      effects: this.effects,
      pageSize: () =>
        Math.max(
          1,
          innerHeight(
            this.store.state.focus === 'modules' ? layout.modules : this.store.state.focus === 'events' ? layout.log : layout.main,
          ) - 1,
        ),
      edit: (m) => this.#edit(m),
    });
    layout.screen.on('keypress', (ch: string | undefined, key: { full?: string; name?: string } | undefined) => {
      const name = keyName(ch, key);
      if (!name) return;
      // A bug in one handler must not take the terminal down with it: report and carry on.
      try {
        controller.key(name);
      } catch (e) {
        this.store.dispatch({ type: 'notice', text: `internal error on "${name}": ${e instanceof Error ? e.message : String(e)}` });
      }
    });
    layout.screen.on('resize', () => this.#schedule());
    this.#pollTimer = setInterval(() => void this.effects.pollStatus(), STATUS_POLL_MS);
    this.#render();
  }

  #onEvent(e: AgentEvent): void {
    this.store.dispatch({ type: 'event', event: e });
    if (e.event !== 'committed') return;
    // Several events can arrive together (commit, drain, release): refresh once.
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = setTimeout(() => void this.effects.refresh(), 50);
  }

  async #edit(module: string): Promise<void> {
    const s = this.store.state;
    const entry = s.draft[module];
    let base;
    try {
      base = entry
        ? { module, version: entry.baseVersion, generation: 0, hash: entry.baseHash, source: entry.baseText }
        : await this.effects.liveSource(module);
    } catch (e) {
      this.store.dispatch({ type: 'notice', text: `cannot load ${module}: ${e instanceof Error ? e.message : String(e)}` });
      return;
    }
    let r: { text?: string; error?: string };
    try {
      r = await editText(this.layout!.screen, module, entry?.text ?? base.source);
    } catch (e) {
      r = { error: `cannot edit ${module}: ${e instanceof Error ? e.message : String(e)}` };
    }
    if (r.text === undefined) this.store.dispatch({ type: 'notice', text: r.error ?? 'edit failed' });
    else {
      this.store.dispatch({ type: 'draftSet', module, text: r.text, live: base });
      if (draftModules(this.store.state).length > 0) void this.effects.warm();
    }
    this.layout!.screen.alloc();
    this.#render();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#render();
    });
  }

  #render(): void {
    const s = this.store.state;
    if (s.quit) return this.stop();
    if (!this.layout) return;
    this.effects.ensureLoaded(s);
    renderPanes(this.layout, s);
    renderPopup(this.layout, s);
    this.layout.screen.render();
  }

  /** Close the connection and restore the terminal. */
  stop(): void {
    clearTimeout(this.#refreshTimer);
    clearInterval(this.#pollTimer);
    this.link.close();
    this.layout?.screen.destroy();
    this.layout = undefined;
    this.#finish?.();
  }
}
