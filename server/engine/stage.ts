/**
 * Staging: build a new generation from new module versions without making it visible.
 *
 * The staged generation starts as a copy of the current one; each change is evaluated (lazily, in
 * require order, pinned to the staged generation so its top-level calls see staged code) and replaces
 * its module's exports there. Requires of live modules get their facades, requires of staged or new
 * modules load them first. Export kinds are checked, exported promises awaited, then the verify
 * module runs. On any failure every trace is undone (facade additions, pending kept state).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { LivepatchError } from '../../shared/errors';
import { formatDiagnostic, type Diagnostic } from '../../shared/patch';
import type { StageOptions, Staged, VersionRecord } from './types';
import { analyze, type Analysis } from './analyze';
import { planCanon, exportKinds, shapeOf, type CanonPlan } from './canon';
import { VersionCtl } from './dispatch';
import { beginEffects, endEffects, recordGlobalChanges, snapshotGlobals, type EffectLog } from './effects';
import { evalText, makeExports, unsupported, unsupportedMessage } from './esm';
import { candidateIds, evaluateEsm, evaluateModule, withTimeout } from './evaluate';
import { instrument } from './instrument';
import { oneLine } from './keep';
import type { ModuleMapper } from './module-id';
import { effectProblems, reachProblems } from './reach';
import { newHealth } from './health';
import { newLiveModule, state, type Generation, type KeptValue, type LiveModule, type VersionEntry } from './state';
import { runVerify } from './verify';
import { sha256 } from '../../shared/hash';

/** What staging needs from the engine. */
export interface StageHost {
  readonly mapper: ModuleMapper;
  readonly modules: Map<string, LiveModule>;
  /** Files the app loaded that could not be made live, by id, with the reason. */
  readonly notLive: ReadonlyMap<string, string>;
  /** Generations being staged or staged and not yet committed or discarded. */
  readonly stagingGens: Set<Generation>;
  currentGen(): Generation;
  /** The exports and cell of `entry` if some part of the engine still holds them (no re-evaluation needed). */
  exportsInMemory(id: string, entry: VersionEntry): { exports: unknown; ctl: VersionCtl } | undefined;
  /** Recompute `state.multi` and the modules' stale flags after a stage or generation came or went. */
  recomputeMulti(): void;
}

/** One module to stage: new code (a patch) or an earlier version (a rollback). */
export interface StageItem {
  id: string;
  js: string;
  source: string;
  /** Earlier version to restore (rollback): its record is reused as is. */
  reuse?: VersionEntry;
}

/** Engine-side state of a staged generation. */
export interface StagedState {
  readonly staged: Staged;
  readonly gen: Generation;
  /** Changed module id → the version entry it gets. */
  readonly entries: Map<string, VersionEntry>;
  readonly newMods: Map<string, LiveModule>;
  /** What the commit must do to each changed module's canonical exports. */
  readonly plans: Map<string, CanonPlan>;
  readonly pending: Map<string, Map<string, { value: unknown; shape: number | string | undefined }>>;
  /** Effects the staged code started (undone when the stage does not commit). */
  readonly effects: EffectLog;
}

/** Slot numbering of a module's dispatch points (the same key keeps its slot across versions). */
export function slotFn(mod: { slots: Map<string, number> }): (key: string) => number {
  return (key) => {
    let n = mod.slots.get(key);
    if (n === undefined) mod.slots.set(key, (n = mod.slots.size));
    return n;
  };
}

function syntaxError(id: string, e: unknown): LivepatchError {
  const line = (e as { loc?: { line?: number } })?.loc?.line;
  const where = line ? `${id}(${line})` : id;
  return new LivepatchError('LP_ERR_PATCH_SYNTAX', `${where}: ${oneLine(e)}`, { module: id, line, message: oneLine(e) });
}

/**
 * The static verdict on a patch (no code runs): changes a commit could not reach
 * (LP_ERR_PATCH_UNREACHABLE) and top-level effects a new version would repeat (LP_ERR_PATCH_EFFECT),
 * as diagnostics in tsc's form. `check`, dry runs and applies all use it, so they agree.
 */
/**
 * The line of the TypeScript source that JS line `line` came from: the same text where tsc kept it,
 * else the line naming `name`, else the JS line itself.
 */
function sourceLine(js: string, source: string | undefined, line: number, name?: string): number {
  if (!source) return line;
  const jsLine = (js.split('\n')[line - 1] ?? '').trim();
  const ts = source.split('\n');
  let best: number | undefined;
  const near = (i: number): void => {
    if (best === undefined || Math.abs(i + 1 - line) < Math.abs(best - line)) best = i + 1;
  };
  if (jsLine.length > 3) ts.forEach((t, i) => t.trim() === jsLine && near(i));
  if (best === undefined && name && /^[\w$]+$/.test(name)) {
    const re = new RegExp(
      `(function\\s*\\*?\\s*|\\b(const|let|var|class)\\s+|^\\s*(async\\s+|static\\s+|get\\s+|set\\s+|public\\s+|private\\s+|protected\\s+)*)${name.replace(/\$/g, '\\$')}\\b`,
    );
    ts.forEach((t, i) => re.test(t) && near(i));
  }
  return best ?? line;
}

export function staticVerdict(
  host: StageHost,
  items: readonly { id: string; js: string; source?: string }[],
  /** Filled with each new version's analysis, so staging does not parse it again. */
  analyses?: Map<string, Analysis>,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const cur = host.currentGen();
  for (const i of items) {
    const reason = host.notLive.get(i.id);
    if (reason !== undefined && !host.modules.has(i.id)) {
      out.push({
        file: i.id,
        code: 0,
        lpCode: 'LP_ERR_PATCH_NOT_LIVE',
        category: 'error',
        message: `${i.id} is loaded by the app but is not a live module (${reason}); it cannot be patched`,
      });
      continue;
    }
    const entry = cur.versions.get(i.id);
    const esm = isEsm(host, i.id);
    if (!entry && esm && existsSync(host.mapper.runtimeFileOf(i.id))) {
      // Not a new module: an ES module the app has not imported yet; a later import would load the file.
      out.push({
        file: i.id,
        code: 0,
        lpCode: 'LP_ERR_PATCH_NOT_LIVE',
        category: 'error',
        message: `${i.id} is an ES module livepatch has not seen load (not loaded yet, or loaded by require() on a Node without module.registerHooks); a later import would load its file, not this patch`,
      });
      continue;
    }
    let now: Analysis;
    try {
      now = analyze(i.js, esm);
    } catch (e) {
      throw syntaxError(i.id, e);
    }
    analyses?.set(i.id, now);
    const why = esm ? unsupported(now.program) : undefined;
    if (why) out.push({ file: i.id, code: 0, lpCode: 'LP_ERR_PATCH_UNREACHABLE', category: 'error', message: unsupportedMessage(why) });
    if (entry) {
      let was: Analysis | undefined;
      try {
        was = analyze(entry.js, esm);
      } catch {
        was = undefined;
      }
      for (const p of was ? reachProblems(was, now) : []) {
        const line = sourceLine(i.js, i.source, p.line, p.name);
        out.push({
          file: i.id,
          line,
          column: line === p.line ? p.column : 1,
          code: 0,
          lpCode: 'LP_ERR_PATCH_UNREACHABLE',
          category: 'error',
          message: p.message,
        });
      }
    }
    for (const p of effectProblems(now)) {
      const line = sourceLine(i.js, i.source, p.line);
      // A changed statement that is itself the effect is reported once, as the effect.
      const dup = out.findIndex((d) => d.file === i.id && d.line === line && d.lpCode === 'LP_ERR_PATCH_UNREACHABLE');
      if (dup >= 0) out.splice(dup, 1);
      out.push({
        file: i.id,
        line,
        column: line === p.line ? p.column : 1,
        code: 0,
        lpCode: 'LP_ERR_PATCH_EFFECT',
        category: 'error',
        message: p.message,
      });
    }
  }
  return out;
}

/** The LivepatchError for a non-empty static verdict. */
export function verdictError(diagnostics: Diagnostic[]): LivepatchError {
  const code = diagnostics.some((d) => d.lpCode === 'LP_ERR_PATCH_NOT_LIVE')
    ? 'LP_ERR_PATCH_NOT_LIVE'
    : diagnostics.some((d) => d.lpCode === 'LP_ERR_PATCH_UNREACHABLE')
      ? 'LP_ERR_PATCH_UNREACHABLE'
      : 'LP_ERR_PATCH_EFFECT';
  const n = diagnostics.length;
  return new LivepatchError(code, `${n} problem${n === 1 ? '' : 's'}; first: ${formatDiagnostic(diagnostics[0]!)}`, {
    diagnostics: diagnostics.slice(0, 100),
  });
}

/** Whether module `id` is (or, new, would be) an ES module. */
function isEsm(host: StageHost, id: string): boolean {
  const mod = host.modules.get(id);
  return mod ? mod.esm === true : host.mapper.isEsModule(host.mapper.runtimeFileOf(id));
}

/** Evaluate `items` into a staged generation (see file header). Throws a LivepatchError on failure. */
export async function stageItems(
  host: StageHost,
  items: StageItem[],
  opts: StageOptions,
  kind: 'patch' | 'rollback',
): Promise<StagedState> {
  const base = host.currentGen();
  for (const i of items) {
    // Ids are POSIX paths relative to the root; anything else would place a module outside the project.
    if (
      typeof i.id !== 'string' ||
      i.id === '' ||
      i.id.startsWith('/') ||
      /^[A-Za-z]:/.test(i.id) ||
      i.id.split('/').some((p) => p === '..' || p === '.' || p === '') ||
      i.id.includes('\\')
    ) {
      throw new LivepatchError(
        'LP_ERR_PATCH_UNKNOWN_MODULE',
        `${String(i.id)} is not a module id (a POSIX path relative to the project root)`,
        { module: String(i.id) },
      );
    }
  }
  const analyses = new Map<string, Analysis>();
  if (kind === 'patch') {
    const verdict = staticVerdict(host, items, analyses);
    if (verdict.length > 0) throw verdictError(verdict);
  }
  const gen: Generation = {
    n: base.n + 1,
    versions: new Map(base.versions),
    exports: new Map(base.exports),
    ctl: new Map(base.ctl),
    inflight: 0,
    released: false,
    health: newHealth(),
    summary: { generation: base.n + 1, kind, time: '', changed: [] },
  };
  const s: StagedState = {
    // Unguessable: a stage id is a capability to commit or abort that stage.
    staged: { stageId: `stage-${randomBytes(16).toString('hex')}`, baseGeneration: base.n, changes: [], newModules: [] },
    gen,
    entries: new Map(),
    newMods: new Map(),
    plans: new Map(),
    pending: new Map(),
    effects: beginEffects(gen),
  };
  const byId = new Map(items.map((i) => [i.id, i]));
  const loading = new Set<string>();
  const loadTimeoutMs = opts.loadTimeoutMs ?? 2000;

  const modOf = (id: string): LiveModule | undefined => host.modules.get(id) ?? s.newMods.get(id);
  const resolveLive = (fromId: string, request: string): { value: unknown; esm?: boolean } | undefined => {
    for (const cand of candidateIds(fromId, request)) {
      if (byId.has(cand)) {
        load(cand);
        const m = modOf(cand);
        // An ES module's importers get the version's own exports (its namespace cannot gain names).
        return m?.esm ? { value: gen.exports.get(cand), esm: true } : { value: m?.canon ?? gen.exports.get(cand) };
      }
      const live = host.modules.get(cand);
      if (live) return live.esm ? { value: gen.exports.get(cand) ?? live.canon, esm: true } : { value: live.canon };
    }
    return undefined;
  };

  const load = (id: string): void => {
    if (s.entries.has(id) || loading.has(id)) return;
    loading.add(id);
    const item = byId.get(id)!;
    let mod = host.modules.get(id);
    const isNew = !mod;
    if (!mod) {
      s.newMods.set(id, (mod = newLiveModule(id, host.mapper.sourceFileOf(id), host.mapper.runtimeFileOf(id))));
      if (isEsm(host, id)) mod.esm = true;
    }
    const record: VersionRecord = item.reuse?.record ?? {
      id,
      version: mod.versions.length + 1,
      generation: gen.n,
      hash: sha256(item.source || item.js),
      source: item.source,
      sourceFile: mod.sourceFile,
      runtimeFile: mod.runtimeFile,
    };
    const entry: VersionEntry = item.reuse ?? { record, js: item.js };
    const mem = item.reuse ? host.exportsInMemory(id, item.reuse) : undefined;
    let modExports: unknown;
    let ctl: VersionCtl;
    if (mem) ({ exports: modExports, ctl } = mem);
    else {
      let analysis = analyses.get(id);
      try {
        analysis ??= analyze(entry.js, mod.esm === true);
      } catch (e) {
        throw syntaxError(id, e);
      }
      ctl = new VersionCtl(mod);
      const pending = new Map<string, KeptValue>();
      s.pending.set(id, pending);
      const before = snapshotGlobals();
      try {
        const input = {
          id,
          version: record.version,
          js: '',
          runtimeFile: mod.runtimeFile,
          timeoutMs: loadTimeoutMs,
          resolveLive,
          ctx: { id, pending },
          ctl,
        };
        if (mod.esm) {
          try {
            input.js = evalText(analysis, slotFn(mod));
          } catch (e) {
            throw new LivepatchError('LP_ERR_PATCH_LOAD', `${id}: ${oneLine(e)}`, { module: id, message: oneLine(e) });
          }
          modExports = evaluateEsm(input, makeExports);
        } else {
          input.js = instrument(analysis, slotFn(mod));
          modExports = evaluateModule(input);
        }
      } finally {
        recordGlobalChanges(s.effects, before);
      }
      refuseLasting(s.effects, id);
    }
    if (isNew) {
      mod.canon = modExports;
      mod.canonCtl = ctl;
      mod.shape = shapeOf(modExports);
      mod.kinds = exportKinds(modExports);
    } else s.plans.set(id, planCanon(mod, modExports));
    gen.exports.set(id, modExports);
    gen.ctl.set(id, ctl);
    gen.versions.set(id, entry);
    s.entries.set(id, entry);
    loading.delete(id);
  };

  state.staging++;
  host.stagingGens.add(gen);
  host.recomputeMulti();
  try {
    state.als.run(gen, () => {
      for (const item of items) load(item.id);
    });
    host.recomputeMulti();
    for (const id of s.entries.keys()) await awaitExportedPromises(id, gen.exports.get(id), loadTimeoutMs);
    refuseLasting(s.effects);
    if (opts.verifyJs !== undefined) {
      await runVerify(host, gen, opts.verifyJs, opts.verifyTimeoutMs ?? 5000, loadTimeoutMs, resolveLive);
      // Verify hooks are probes: whatever they started does not outlive them.
      s.effects.undo();
    }
  } catch (e) {
    undoStage(host, s);
    throw e instanceof LivepatchError ? e : new LivepatchError('LP_ERR_PATCH_LOAD', oneLine(e));
  }
  return { ...s, staged: { ...s.staged, changes: [...s.entries.values()].map((e) => e.record), newModules: [...s.newMods.keys()] } };
}

/**
 * Refuse a version whose loading left something running (an interval, a pending timer, a listener, a
 * listening server, a changed global); with `id`, only what that module's synchronous top level
 * started, except one-shot timers, which may still fire while exported promises settle.
 */
function refuseLasting(log: EffectLog, id?: string): void {
  const e = log
    .lasting()
    .find((x) => (id === undefined ? true : x.module === id && x.what !== 'setTimeout()' && x.what !== 'setImmediate()'));
  if (!e) return;
  const where = e.module ?? id ?? 'staged code';
  const message = `${where}: top-level code ${e.what.startsWith('globalThis') ? `changed a global (${e.what})` : `called ${e.what}`} while loading; a new version must not start anything a second time in the running process. Wrap it in keep('…', () => …), or move it to a module you do not patch`;
  throw new LivepatchError('LP_ERR_PATCH_EFFECT', message, { module: where, effect: e.what, message });
}

async function awaitExportedPromises(id: string, exports: unknown, timeoutMs: number): Promise<void> {
  if (exports === null || typeof exports !== 'object') return;
  for (const name of Object.keys(exports)) {
    const d = Object.getOwnPropertyDescriptor(exports, name);
    const v: unknown = d && 'value' in d ? d.value : undefined;
    if (!(v instanceof Promise)) continue;
    const timeout = (): Error =>
      new LivepatchError('LP_ERR_PATCH_TIMEOUT', `${id}: exported promise "${name}" did not settle within ${timeoutMs} ms`, {
        module: id,
        export: name,
      });
    try {
      await withTimeout(v, timeoutMs, timeout);
    } catch (e) {
      if (e instanceof LivepatchError) throw e;
      throw new LivepatchError('LP_ERR_PATCH_LOAD', `${id}: exported promise "${name}" rejected: ${oneLine(e)}`, {
        module: id,
        export: name,
        message: oneLine(e),
      });
    }
  }
}

/** Remove every trace of a stage that will not be committed, including what its code started. */
export function undoStage(host: StageHost, s: StagedState): void {
  s.effects.undo();
  endEffects(s.gen);
  s.plans.clear();
  s.pending.clear();
  s.gen.exports.clear();
  s.gen.ctl.clear();
  s.gen.released = true;
  host.stagingGens.delete(s.gen);
  state.staging = Math.max(0, state.staging - 1);
  host.recomputeMulti();
}
