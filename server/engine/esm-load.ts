/**
 * The main-thread side of live ES modules: registers the loader hooks (esm-hooks.ts) and answers
 * the deployed modules' cell requests (esm.ts): a cell is prepared when a module's virtual cell module
 * evaluates, `keep` calls are attributed to the module while its body runs, and the module is adopted
 * as live (version 1, its namespace as the canonical exports) when its body finishes.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import { VersionCtl } from './dispatch';
import type { EsmCtlRequest } from './esm';
import { initializeInThread, loadSync, type EsmHookData, type EsmNotLive } from './esm-hooks';
import type { LiveEngine } from './live-engine';
import { registerFn, registerHooksFn } from './node-internals';
import { slotFn } from './stage';
import { newLiveModule, state, type LiveModule } from './state';

interface Pending {
  readonly mod: LiveModule;
  readonly ns: object;
  readonly file: string;
}

/**
 * Register the hooks and the cell handlers for `engine`. Node ≥ 22.15 runs the hooks in this thread
 * (`module.registerHooks`). Older Node runs them on a loader thread of their own (`module.register`),
 * which also runs the process's `-r` preloads: that is done only when the entry `entry` is itself an ES
 * module, so CommonJS apps there see no change. Returns how ES modules are handled.
 */
export function installEsm(engine: LiveEngine, entry: string | undefined): 'in-thread' | 'loader-thread' | 'none' {
  const registerHooks = registerHooksFn();
  const register = registerFn();
  const pending = new WeakMap<VersionCtl, Pending>();
  const report = (file: string, reason: string, kind: string): void => {
    try {
      engine.markNotLive(engine.mapper.locate(file, readText(file)).id, reason, kind);
    } catch {
      // A report about a file we cannot read: nothing to record.
    }
  };
  const entryIsEsm = entry !== undefined && engine.mapper.inScope(resolve(entry)) && engine.mapper.isEsModule(resolve(entry));
  let how: 'in-thread' | 'loader-thread' | 'none' = 'none';
  if (registerHooks) {
    initializeInThread(engine.root, report);
    registerHooks({ load: loadSync });
    how = 'in-thread';
  } else if (register && entryIsEsm) {
    const { port1, port2 } = new MessageChannel();
    port1.on('message', (m: EsmNotLive) => report(m.file, m.reason, m.kind));
    port1.unref();
    const data: EsmHookData = { root: engine.root, port: port2 };
    register(pathToFileURL(join(__dirname, 'esm-hooks.js')).href, { data, transferList: [port2] });
    how = 'loader-thread';
  } else if (entryIsEsm) {
    report(resolve(entry), 'an ES module, and this Node has no module customization hooks', 'ES modules on a Node without module hooks');
    return how;
  } else return how;
  // These run inside the app's own module evaluation: a failure of ours must never fail the app's
  // import, so each is contained (the module then loads and runs, not live, and is reported).
  const failed = (file: string, e: unknown): void =>
    report(file, `livepatch could not make it live (${(e as Error)?.message ?? String(e)})`, 'ES modules livepatch failed to adopt');
  state.esm = {
    prepare(req: EsmCtlRequest): VersionCtl {
      let file = '';
      try {
        file = fileURLToPath(req.url);
        const loc = engine.mapper.locate(file, readText(file));
        const mod = newLiveModule(loc.id, loc.sourceFile, file);
        mod.esm = true;
        const slot = slotFn(mod);
        for (const k of req.keys) slot(k);
        const ctl = new VersionCtl(mod);
        pending.set(ctl, { mod, ns: req.ns, file });
        return ctl;
      } catch (e) {
        failed(file, e);
        return new VersionCtl(newLiveModule('', file, file));
      }
    },
    begin(ctl: VersionCtl): void {
      if (pending.has(ctl)) state.evalStack.push({ id: ctl.mod.id });
    },
    adopt(ctl: VersionCtl): void {
      const p = pending.get(ctl);
      if (!p) return;
      pending.delete(ctl);
      const top = state.evalStack[state.evalStack.length - 1];
      if (top?.id === p.mod.id && top.pending === undefined) state.evalStack.pop();
      try {
        engine.adopt(p.mod, ctl, p.ns, readText(p.file));
      } catch (e) {
        failed(p.file, e);
      }
    },
  };
  return how;
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
