/**
 * Read-only views of the engine's generations and modules, shaped as the protocol's results
 * (versions, exports, history). Kept apart from the engine so the state transitions stay readable.
 */
import { LivepatchError } from '../../shared/errors';
import type { ExportsResult } from '../../shared/ops';
import type { GenerationSummary, ModuleVersionInfo } from '../../shared/patch';
import type { Generation, LiveModule } from './state';

/** One row per module of `g`, sorted by id (empty for an unknown generation). */
export function listVersions(g: Generation | undefined): ModuleVersionInfo[] {
  if (!g) return [];
  return [...g.versions.values()]
    .map((e) => ({
      module: e.record.id,
      version: e.record.version,
      generation: e.record.generation,
      hash: e.record.hash,
      patched: e.record.version > 1 || e.record.generation > 1,
    }))
    .sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
}

/** Export names and kinds of a live module; LP_ERR_PATCH_UNKNOWN_MODULE when it is not live. */
export function exportsOf(mod: LiveModule | undefined, id: string): ExportsResult['exports'] {
  if (!mod) throw new LivepatchError('LP_ERR_PATCH_UNKNOWN_MODULE', `${id} is not a live module`, { module: id });
  return [...mod.kinds].map(([name, kind]) => ({ name, kind }));
}

/** The summary of one generation with its live/current/in-flight state filled in. */
export function summarize(g: Generation, live: ReadonlySet<Generation>, current: Generation): GenerationSummary {
  const out: GenerationSummary = {
    ...g.summary,
    changed: [...g.summary.changed],
    live: live.has(g),
    current: g === current,
    inflight: live.has(g) ? g.inflight : 0,
  };
  for (const k of Object.keys(out) as (keyof GenerationSummary)[]) if (out[k] === undefined) delete out[k];
  return out;
}

/** Every generation, oldest first. */
export function history(gens: readonly Generation[], live: ReadonlySet<Generation>, current: Generation): GenerationSummary[] {
  return gens.map((g) => summarize(g, live, current));
}
