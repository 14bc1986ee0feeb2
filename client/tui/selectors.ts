/**
 * Derived views of the state (pure): what the modules list shows after filtering, which generations
 * a rollback may target, what the draft contains. Used by the reducer, the views and the controller.
 */
import type { GenerationSummary, ModuleVersionInfo, PatchSet } from '../../shared';
import type { TuiState } from './state';

/** Modules matching the filter (case-insensitive substring). */
export function visibleModules(s: Pick<TuiState, 'modules' | 'filter'>): ModuleVersionInfo[] {
  const f = s.filter.toLowerCase();
  return s.modules.filter((m) => m.module.toLowerCase().includes(f));
}

/** Generations a rollback can go back to: every recorded one except the current, newest first. */
export function rollbackTargets(s: Pick<TuiState, 'history' | 'status'>): GenerationSummary[] {
  const current = s.status?.currentGeneration;
  return [...s.history].filter((g) => g.generation !== current).sort((a, b) => b.generation - a.generation);
}

export function draftModules(s: Pick<TuiState, 'draft'>): string[] {
  return Object.keys(s.draft).sort();
}

/** The draft as a patch set, with base hashes so a concurrent change is reported as a conflict. */
export function draftPatch(s: Pick<TuiState, 'draft'>, message?: string): PatchSet {
  const files: Record<string, string> = {};
  const base: Record<string, string> = {};
  for (const m of draftModules(s)) {
    files[m] = s.draft[m]!.text;
    base[m] = s.draft[m]!.baseHash;
  }
  return { files, base, ...(message ? { message } : {}) };
}

/** Text shown for a module: the draft's when it is being edited, else the live source (if loaded). */
export function shownSource(s: Pick<TuiState, 'draft' | 'sources'>, module: string): string | undefined {
  return s.draft[module]?.text ?? s.sources[module]?.source;
}

/**
 * Draft modules whose live version moved on since they were edited (someone else patched them):
 * applying would be refused as a conflict. Maps module → the live version now.
 */
export function outdatedDraft(s: Pick<TuiState, 'draft' | 'modules'>): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of s.modules) {
    const d = s.draft[m.module];
    if (d && d.baseHash !== m.hash) out.set(m.module, m.version);
  }
  return out;
}
