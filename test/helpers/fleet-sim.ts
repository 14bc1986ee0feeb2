/**
 * Lightweight fleet members: the agent's real fleet code (server/fleet/member.ts) over a stand-in
 * engine and pipeline whose stage and commit return at once (optionally after `stageMs`). For the
 * 200-member benchmark and for decision-logic tests that need members to come and go at exact moments.
 */
import type { Engine } from '../../server/engine/types';
import type { Pipeline } from '../../server/pipeline/types';

export interface StandIn {
  engine: Engine;
  pipeline: Pipeline;
  /** Patch ids committed (stage+commit or apply), in order. */
  committed: string[];
}

export function standIn(stageMs = 0): StandIn {
  let generation = 1;
  let next = 0;
  const staged = new Map<string, string>();
  const committed: string[] = [];
  const engine = {
    get currentGeneration() {
      return generation;
    },
    getVersion: () => undefined,
  } as unknown as Engine;
  const commit = (id: string) => {
    committed.push(id);
    return { generation: ++generation, previousGeneration: generation - 1, changed: [] };
  };
  const pipeline = {
    patching: { enabled: true },
    startupEvents: async () => [],
    stage: async (patch: { id?: string }) => {
      if (stageMs) await new Promise((r) => setTimeout(r, stageMs));
      const stageId = `s${++next}`;
      staged.set(stageId, patch.id ?? '');
      return { stageId, baseGeneration: generation, modules: [], diagnostics: [], expiresAt: new Date().toISOString() };
    },
    commit: async (stageId: string) => {
      const id = staged.get(stageId);
      if (id === undefined) throw new Error('unknown stage');
      staged.delete(stageId);
      return commit(id);
    },
    abort: (stageId: string) => void staged.delete(stageId),
    apply: async (patch: { id?: string }) => commit(patch.id ?? ''),
    rollback: async () => commit('rollback'),
  } as unknown as Pipeline;
  return { engine, pipeline, committed };
}
