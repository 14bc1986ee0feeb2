/**
 * Everything the TUI asks of the agent: refresh the snapshot, load a module's source or exports,
 * check, apply, roll back, evaluate in the REPL. Each turns replies (and failures) into actions; no
 * failure escapes, so a bad reply can never take the screen down.
 */
import { writeFile } from 'node:fs/promises';
import { LivepatchError, type ProgressMessage } from '../../shared';
import { diagnosticsOf } from '../format';
import { RemoteRepl } from '../repl/session';
import type { Action } from './actions';
import type { AgentLink } from './link';
import { draftModules, draftPatch } from './selectors';
import type { TuiState } from './state';

export interface StoreLike {
  readonly state: TuiState;
  dispatch(a: Action): void;
}

function errorOf(e: unknown): LivepatchError {
  return e instanceof LivepatchError ? e : new LivepatchError('LP_ERR_INTERNAL', e instanceof Error ? e.message : String(e));
}

/** Agent operations bound to one store and link. */
export class Effects {
  #store: StoreLike;
  #link: AgentLink;
  #loading = new Set<string>();
  #repl: RemoteRepl | undefined;

  constructor(store: StoreLike, link: AgentLink) {
    this.#store = store;
    this.#link = link;
  }

  #fail(title: string, e: unknown): void {
    const err = errorOf(e);
    this.#store.dispatch({ type: 'rejected', title, message: `${err.message} (${err.code})`, diagnostics: diagnosticsOf(err) });
  }

  #progress(title: string): (p: ProgressMessage) => void {
    return (p) => this.#store.dispatch({ type: 'popup', popup: { kind: 'busy', title, message: `${p.step}: ${p.message}` } });
  }

  /** Fetch status, versions and history together; the snapshot replaces them at once. */
  async refresh(): Promise<void> {
    try {
      const c = this.#link.client();
      const [status, versions, history] = await Promise.all([
        c.request('status', {}),
        c.request('versions', {}),
        c.request('history', { limit: 200 }),
      ]);
      this.#store.dispatch({ type: 'snapshot', status, versions, history: history.generations });
    } catch (e) {
      if (this.#link.connected) this.#store.dispatch({ type: 'notice', text: `refresh failed: ${errorOf(e).message}` });
    }
  }

  /** Poll the status alone (in-flight counts move without events); silent on failure. */
  async pollStatus(): Promise<void> {
    if (!this.#link.connected) return;
    try {
      this.#store.dispatch({ type: 'status', status: await this.#link.client().request('status', {}) });
    } catch {
      /* a drop is reported by the link */
    }
  }

  /** Load what the current tab needs for the selected module, once. */
  ensureLoaded(s: TuiState): void {
    const m = s.selected;
    if (!m || !this.#link.connected || !s.modules.some((x) => x.module === m)) return;
    if (s.tab === 'source' && !s.sources[m]) void this.#load('source', m);
    if (s.tab === 'exports' && !s.exports[m]) void this.#load('exports', m);
  }

  async #load(what: 'source' | 'exports', module: string): Promise<void> {
    const key = `${what}:${module}`;
    if (this.#loading.has(key)) return;
    this.#loading.add(key);
    try {
      const c = this.#link.client();
      if (what === 'source') this.#store.dispatch({ type: 'source', result: await c.request('source', { module }) });
      else this.#store.dispatch({ type: 'exports', result: await c.request('exports', { module }) });
    } catch (e) {
      this.#store.dispatch({ type: 'notice', text: `cannot load ${what} of ${module}: ${errorOf(e).message}` });
    } finally {
      this.#loading.delete(key);
    }
  }

  /** The live source of a module (cached, else fetched): the base an edit starts from. */
  async liveSource(module: string) {
    return this.#store.state.sources[module] ?? this.#link.client().request('source', { module });
  }

  async check(): Promise<void> {
    const s = this.#store.state;
    if (draftModules(s).length === 0)
      return this.#store.dispatch({ type: 'notice', text: 'the draft is empty: press e to edit a module first' });
    this.#store.dispatch({
      type: 'popup',
      popup: { kind: 'busy', title: 'Checking', message: `type-checking ${draftModules(s).join(', ')}…` },
    });
    try {
      const result = await this.#link.client().request('check', { patch: draftPatch(s) }, { onProgress: this.#progress('Checking') });
      this.#store.dispatch({ type: 'checked', result });
    } catch (e) {
      this.#fail('Check failed', e);
    }
  }

  async apply(message: string): Promise<void> {
    const s = this.#store.state;
    this.#store.dispatch({ type: 'popup', popup: { kind: 'busy', title: 'Applying', message: `checking ${draftModules(s).join(', ')}…` } });
    try {
      const result = await this.#link
        .client()
        .request('apply', { patch: draftPatch(s, message.trim() || undefined) }, { onProgress: this.#progress('Applying') });
      this.#store.dispatch({ type: 'applied', result, kind: 'patch' });
    } catch (e) {
      this.#fail('Patch rejected', e);
    }
    await this.refresh();
  }

  /**
   * Write the draft as an unsigned .json patch set (sources and the live hashes they were edited
   * from) for `livepatch sign`. An existing file is never overwritten.
   */
  async exportDraft(path: string): Promise<void> {
    const s = this.#store.state;
    const file = path.trim();
    const modules = draftModules(s);
    if (!file) return this.#store.dispatch({ type: 'exported', path: file, modules, error: 'no file name given' });
    try {
      await writeFile(file, JSON.stringify(draftPatch(s), null, 2) + '\n', { flag: 'wx', mode: 0o644 });
      this.#store.dispatch({ type: 'exported', path: file, modules });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'EEXIST' ? 'it already exists (it is not overwritten): choose another name' : (code ?? String(e));
      this.#store.dispatch({ type: 'exported', path: file, modules, error: `cannot write ${file}: ${why}` });
    }
  }

  async rollback(to: number): Promise<void> {
    this.#store.dispatch({ type: 'popup', popup: { kind: 'busy', title: 'Rolling back', message: `to generation ${to}…` } });
    try {
      const result = await this.#link.client().request('rollback', { to }, { onProgress: this.#progress('Rolling back') });
      this.#store.dispatch({ type: 'applied', result, kind: 'rollback' });
    } catch (e) {
      this.#fail('Rollback refused', e);
    }
    await this.refresh();
  }

  /**
   * The draft just changed, so a check or an apply is likely soon: ask the agent to build the live
   * program now (the `warm` op), so that check finds a warm type checker. Only when the last status
   * shows the host's checker stopped; silent, because a failure here only means a cold check later.
   */
  async warm(): Promise<void> {
    const s = this.#store.state;
    if (!this.#link.connected || s.role === 'read' || s.status?.checker?.state !== 'stopped') return;
    try {
      await this.#link.client().request('warm', {});
    } catch {
      /* the next check starts the checker itself */
    }
  }

  /** The REPL session is per connection: a reconnect opens a new one. */
  resetRepl(): void {
    this.#repl = undefined;
  }

  async evaluate(code: string): Promise<void> {
    try {
      const c = this.#link.client();
      if (!this.#repl || this.#repl.client !== c) {
        // Kept only once open, so a failed open is retried by the next evaluation.
        const repl = new RemoteRepl(c);
        await repl.open();
        this.#repl = repl;
      }
      const r = await this.#repl.eval(code);
      const lines = [
        ...r.console.map((l) => `${l.level === 'log' ? '' : `[${l.level}] `}${l.text}`),
        r.output + (r.truncated ? ' …(truncated)' : ''),
      ];
      this.#store.dispatch({ type: 'replOutput', lines: lines.flatMap((l) => l.split('\n')), error: false });
    } catch (e) {
      const err = errorOf(e);
      const diags = diagnosticsOf(err).map((d) => `  ${d.line ?? ''}:${d.column ?? ''} TS${d.code}: ${d.message}`);
      this.#store.dispatch({ type: 'replOutput', lines: [`${err.code}: ${err.message}`, ...diags], error: true });
    }
  }
}
