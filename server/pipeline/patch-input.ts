/**
 * Checks on a patch set before any compiler work: module ids are safe relative TypeScript paths,
 * sizes are bounded, and every declared base hash still matches the live source (else a conflict,
 * nothing staged). Also the overlay of live sources the checker lays over the deployed files.
 */
import { join } from 'node:path';
import { LivepatchError } from '../../shared/errors';
import type { ClientCompiled, PatchSet } from '../../shared/patch';
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
    if (!ok)
      throw new LivepatchError(
        'LP_ERR_PATCH_UNKNOWN_MODULE',
        `Not a module id (a relative .ts path inside the project): ${JSON.stringify(id).slice(0, 200)}`,
        { module: id.slice(0, 1024) },
      );
    const text = patch.files[id];
    if (typeof text !== 'string') throw new LivepatchError('LP_ERR_OP_BAD_ARGS', `Source of ${id} is not a string`);
    bytes += text.length;
  }
  if (bytes > MAX_PATCH_BYTES)
    throw new LivepatchError('LP_ERR_OP_BAD_ARGS', `The patch set is too large (${bytes} characters, limit ${MAX_PATCH_BYTES})`);
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

/** Live module ids a client must have checked against: those with a TypeScript id. */
const TS_ID = /\.(ts|tsx|mts|cts)$/;

/**
 * Verify a client's check of `patch` (its `compiled` part) against what this host runs, and return it.
 * Every module it names must hash to what runs here (the live version, else `manifestHash`, the build
 * manifest's hash of the deployed source), and every live module not patched must be named:
 * otherwise LP_ERR_PATCH_CONFLICT with `details.conflicts` ({module, expected: the client's hash or
 * null, actual: the host's}). JS for exactly the patched modules (and the verify module exactly when
 * there is one) is required, else LP_ERR_OP_BAD_ARGS.
 */
export function checkClientCompiled(engine: Engine, patch: PatchSet, manifestHash: (id: string) => string | undefined): ClientCompiled {
  const c = patch.compiled;
  if (!c) throw new LivepatchError('LP_ERR_OP_BAD_ARGS', 'The patch set carries no client check (compiled)');
  // A set signed with its JavaScript (livepatch sign --compile) that no client has checked yet.
  const against = c.against;
  if (!against) {
    throw new LivepatchError(
      'LP_ERR_PATCH_NO_SOURCES',
      'This host has no TypeScript sources and the set carries no client check (compiled.against): apply it with --check-here',
      { checks: 'client' },
    );
  }
  const ids = Object.keys(patch.files);
  const missing = ids.filter((id) => typeof c.js[id] !== 'string');
  const extra = Object.keys(c.js).filter((id) => !Object.prototype.hasOwnProperty.call(patch.files, id));
  if (missing.length > 0 || extra.length > 0) {
    const what =
      missing.length > 0
        ? `no JavaScript for ${missing.slice(0, 5).join(', ')}`
        : `JavaScript for modules the patch does not change: ${extra.slice(0, 5).join(', ')}`;
    throw new LivepatchError('LP_ERR_OP_BAD_ARGS', `compiled does not match the patch set: ${what}`.slice(0, 1000));
  }
  if ((patch.verify === undefined) !== (c.verifyJs === undefined)) {
    throw new LivepatchError('LP_ERR_OP_BAD_ARGS', 'compiled.verifyJs must be given exactly when the patch set has a verify module');
  }
  const conflicts: { module: string; expected: string | null; actual: string | null }[] = [];
  for (const [id, claimed] of Object.entries(against)) {
    if (Object.prototype.hasOwnProperty.call(patch.files, id)) continue;
    const actual = engine.getVersion(id)?.hash ?? manifestHash(id);
    if (actual !== undefined && actual !== claimed) conflicts.push({ module: id, expected: claimed, actual });
  }
  for (const id of engine.moduleIds()) {
    if (!TS_ID.test(id) || Object.prototype.hasOwnProperty.call(patch.files, id) || Object.prototype.hasOwnProperty.call(against, id))
      continue;
    conflicts.push({ module: id, expected: null, actual: engine.getVersion(id)?.hash ?? null });
  }
  if (conflicts.length > 0) {
    conflicts.sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
    const first = conflicts[0]!;
    const why =
      first.expected === null
        ? `the client did not check against live module ${first.module}`
        : `the client checked against ${first.module} ${first.expected.slice(0, 12)}, this host runs ${first.actual?.slice(0, 12) ?? 'nothing'}`;
    throw new LivepatchError(
      'LP_ERR_PATCH_CONFLICT',
      `The client's check does not match the live program (${conflicts.length} module(s)): ${why}`.slice(0, 2000),
      { conflicts: conflicts.slice(0, 100) },
    );
  }
  return c;
}
