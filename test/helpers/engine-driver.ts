/**
 * Engine test driver, preloaded into a real child app after the register:
 * `node -r livepatch/register -r dist/test/helpers/engine-driver.js dist/main.js` (spawned with IPC).
 *
 * It answers `{ id, op, ... }` messages by calling the installed engine (stage/commit/discard/
 * rollback/state) and replies `{ id, ok, result | error }`. For the collection test it registers the
 * exports of every committed module version in a FinalizationRegistry (reading the engine's internal
 * generation table only to obtain the objects to watch) and reports which were collected after gc.
 */
import { getEngine, keep } from '../../server/engine';
import { state } from '../../server/engine/state';
import type { Staged } from '../../server/engine/types';

type Msg = { id: number; op: string; [k: string]: any };

const staged = new Map<string, Staged>();
const collected = new Set<string>();
const registry = new FinalizationRegistry<string>((label) => collected.add(label));
let watched = 0;

function watchGeneration(n: number): void {
  const g = (state.engine as any)?.gens?.[n - 1];
  if (!g) return;
  for (const id of g.summary.changed as string[]) {
    const e = g.exports.get(id);
    if (e && typeof e === 'object') {
      registry.register(e, `${n}:${id}`);
      watched++;
      // Exported classes too: method dispatch caches must not keep a released version's class.
      for (const [name, v] of Object.entries(e)) {
        if (typeof v === 'function' && /^class\b/.test(Function.prototype.toString.call(v))) {
          registry.register(v as object, `${n}:${id}:${name}`);
          watched++;
        }
      }
    }
  }
}

async function handle(m: Msg): Promise<unknown> {
  const engine = getEngine();
  if (!engine) throw new Error('no engine installed');
  switch (m.op) {
    case 'stage': {
      const s = await engine.stage(m.changes, m.opts ?? {});
      staged.set(s.stageId, s);
      return s;
    }
    case 'commit': {
      const s = staged.get(m.stageId);
      if (!s) throw new Error('unknown stage');
      staged.delete(m.stageId);
      return engine.commit(s, m.meta ?? {});
    }
    case 'discard': {
      const s = staged.get(m.stageId);
      if (s) engine.discard(s);
      staged.delete(m.stageId);
      return { discarded: true };
    }
    case 'apply': {
      const s = await engine.stage(m.changes, m.opts ?? {});
      return engine.commit(s, m.meta ?? {});
    }
    case 'rollback':
      return engine.rollback(m.to, m.meta ?? {});
    case 'hold': {
      engine.holdRequests(new Promise((r) => setTimeout(r, m.ms)), m.maxMs);
      return { held: true };
    }
    case 'keep-outside':
      return keep('outside', () => 1);
    case 'state':
      return {
        current: engine.currentGeneration,
        live: engine.liveGenerations(),
        history: engine.history(),
        versions: engine.listVersions(m.generation),
        modules: engine.moduleIds(),
        exports: m.exportsOf ? engine.exportsOf(m.exportsOf) : undefined,
        multi: state.multi,
      };
    case 'gc': {
      for (let i = 0; i < 6; i++) {
        (globalThis as any).gc?.();
        await new Promise((r) => setTimeout(r, 20));
      }
      return { watched, collected: [...collected].sort(), heapUsed: process.memoryUsage().heapUsed };
    }
    default:
      throw new Error(`unknown op ${m.op}`);
  }
}

getEngine()?.on('commit', (s: { generation: number }) => watchGeneration(s.generation));

process.on('message', (m: Msg) => {
  handle(m).then(
    (result) => process.send?.({ id: m.id, ok: true, result }),
    (e: any) => process.send?.({ id: m.id, ok: false, error: { code: e?.code, message: String(e?.message ?? e), details: e?.details } }),
  );
});
// The IPC channel must not keep the app alive on its own.
process.channel?.unref();
