/**
 * The main-thread side of live ES modules: registers the loader hooks (esm-hooks.ts) and answers
 * the deployed modules' cell requests (esm.ts): a cell is prepared when a module's virtual cell module
 * evaluates, `keep` calls are attributed to the module while its body runs, and the module is adopted
 * as live (version 1, its namespace as the canonical exports) when its body finishes.
 */
import { readFileSync } from 'node:fs';
import Module from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel } from 'node:worker_threads';
import { VersionCtl } from './dispatch';
import type { EsmCtlRequest } from './esm';
import type { EsmHookData, EsmNotLive } from './esm-hooks';
import type { LiveEngine } from './live-engine';
import { slotFn } from './stage';
import { newLiveModule, state, type LiveModule } from './state';

interface Pending {
  readonly mod: LiveModule;
  readonly ns: object;
  readonly file: string;
}

/** Register the hooks and the cell handlers for `engine`. Returns false where Node has no `module.register`. */
export function installEsm(engine: LiveEngine): boolean {
  const register = (Module as unknown as { register?: (url: string, opts: object) => void }).register;
  if (typeof register !== 'function') return false;
  const pending = new WeakMap<VersionCtl, Pending>();
  state.esm = {
    prepare(req: EsmCtlRequest): VersionCtl {
      const file = fileURLToPath(req.url);
      const loc = engine.mapper.locate(file, readText(file));
      const mod = newLiveModule(loc.id, loc.sourceFile, file);
      mod.esm = true;
      const slot = slotFn(mod);
      for (const k of req.keys) slot(k);
      const ctl = new VersionCtl(mod);
      pending.set(ctl, { mod, ns: req.ns, file });
      return ctl;
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
      engine.adopt(p.mod, ctl, p.ns, readText(p.file));
    },
  };
  const { port1, port2 } = new MessageChannel();
  port1.on('message', (m: EsmNotLive) => {
    try {
      engine.markNotLive(engine.mapper.locate(m.file, readText(m.file)).id, m.reason);
    } catch {
      // A report about a file we cannot read: nothing to record.
    }
  });
  port1.unref();
  const data: EsmHookData = { root: engine.root, port: port2 };
  register(pathToFileURL(join(__dirname, 'esm-hooks.js')).href, { data, transferList: [port2] });
  return true;
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
