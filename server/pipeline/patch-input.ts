/**
 * Checks on a patch set before any compiler work: module ids are safe relative TypeScript paths,
 * sizes are bounded, and every declared base hash still matches the live source (else a conflict,
 * nothing staged). Also the overlay of live sources the checker lays over the deployed files.
 */
import { join } from 'node:path';
import { LivepatchError } from '../../shared/errors';
import type { PatchSet } from '../../shared/patch';
import type { Engine } from '../engine/types';

/** Upper bound on the total size of a patch set's sources (the wire schema bounds each one). */
export const MAX_PATCH_BYTES = 32 * 1024 * 1024;

/** Absolute path of a module id under root. */
export function pathOfId(root: string, id: string): string {
  return join(root, ...id.split('/'));
}

/** Throws LP_ERR_PATCH_UNKNOWN_MODULE for ids that are not plain relative .ts paths inside the root. */
export function validateIds(patch: PatchSet): void {
  const ids = Object.keys(patch.files ?? {});
  if (ids.length === 0) throw new LivepatchError('LP_ERR_OP_BAD_ARGS', 'The patch set names no files');
  let bytes = patch.verify?.length ?? 0;
  for (const id of ids) {
    const segs = id.split('/');
    const ok =
      /\.(ts|tsx|mts|cts)$/.test(id) &&
      !id.endsWith('.d.ts') &&
      !id.includes('\\') &&
      !id.includes('\0') &&
      !id.startsWith('/') &&
      !/^[A-Za-z]:/.test(id) &&
      segs.every((s) => s !== '' && s !== '.' && s !== '..') &&
      !segs.includes('node_modules');
    if (!ok) throw new LivepatchError('LP_ERR_PATCH_UNKNOWN_MODULE', `Not a module id (a relative .ts path inside the project): ${JSON.stringify(id).slice(0, 200)}`, { module: id.slice(0, 1024) });
    const text = patch.files[id];
    if (typeof text !== 'string') throw new LivepatchError('LP_ERR_OP_BAD_ARGS', `Source of ${id} is not a string`);
    bytes += text.length;
  }
  if (bytes > MAX_PATCH_BYTES) throw new LivepatchError('LP_ERR_OP_BAD_ARGS', `The patch set is too large (${bytes} characters, limit ${MAX_PATCH_BYTES})`);
}

/** Throws LP_ERR_PATCH_CONFLICT when a declared base hash no longer matches the live module. */
export function checkBases(engine: Engine, patch: PatchSet): void {
  const conflicts: { module: string; expected: string; actual: string | null }[] = [];
  for (const [id, expected] of Object.entries(patch.base ?? {})) {
    const actual = engine.getVersion(id)?.hash ?? null;
    if (actual !== expected) conflicts.push({ module: id, expected, actual });
  }
  if (conflicts.length > 0) {
    const first = conflicts[0]!;
    throw new LivepatchError(
      'LP_ERR_PATCH_CONFLICT',
      `${first.module} changed since the patch was written (base ${first.expected.slice(0, 12)}, live ${first.actual?.slice(0, 12) ?? 'absent'})`,
      { conflicts },
    );
  }
}

/** Live sources that differ from the deployed files: modules patched or added since deploy. */
export function liveOverlay(engine: Engine, root: string): Map<string, string> {
  const overlay = new Map<string, string>();
  for (const id of engine.moduleIds()) {
    const v = engine.getVersion(id);
    if (v && v.source && (v.version > 1 || v.generation > 1)) overlay.set(pathOfId(root, id), v.source);
  }
  return overlay;
}
