/**
 * The build manifest: written at build time by `livepatch manifest` next to `dist/`, read by the agent
 * at start. It maps each module id (the POSIX path of a TypeScript source relative to the project
 * root) to the sha256 of that source and to the compiled file tsc emits for it, and names the
 * tsconfig's rootDir and outDir.
 *
 * With it, a host that runs only compiled JavaScript (no TypeScript sources, no `typescript`) still
 * knows which module each compiled file is and which source it was built from, so it can accept
 * patches type-checked on a client (`--check-here`): the client proves by hash that it checked
 * against exactly what the host runs. This file reads and validates; it never loads `typescript`.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The manifest's file name, in the project root. */
export const MANIFEST_FILE = 'livepatch.manifest.json';
/** The format tag every manifest carries. */
export const MANIFEST_FORMAT = 'livepatch-manifest/1';
/** A manifest larger than this is refused. */
export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
/** Most modules one manifest may list. */
export const MAX_MANIFEST_MODULES = 100_000;

/** One module of the build. */
export interface ManifestModule {
  /** sha256 hex of the TypeScript source the build compiled. */
  hash: string;
  /** The compiled file, POSIX path relative to the project root (e.g. `dist/rates.js`). */
  js: string;
}

export interface BuildManifest {
  format: typeof MANIFEST_FORMAT;
  /** When it was written (ISO). */
  createdAt: string;
  /** The commit the build was made from (`git rev-parse HEAD`), when known. */
  commit?: string;
  /** tsconfig rootDir and outDir, relative to the project root (POSIX), when set. */
  rootDir?: string;
  outDir?: string;
  /** module id → its source hash and compiled file. */
  modules: Record<string, ManifestModule>;
}

/** A relative POSIX path that stays inside the root. */
export function isInsidePath(p: string): boolean {
  if (typeof p !== 'string' || p.length === 0 || p.length > 1024) return false;
  if (p.includes('\\') || p.includes('\0') || p.startsWith('/') || /^[A-Za-z]:/.test(p)) return false;
  return p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/** Validate parsed JSON as a manifest; returns the reason when it is not one. */
export function validateManifest(x: unknown): { manifest: BuildManifest } | { error: string } {
  if (!x || typeof x !== 'object' || Array.isArray(x)) return { error: 'not a JSON object' };
  const m = x as Record<string, unknown>;
  if (m['format'] !== MANIFEST_FORMAT)
    return { error: `unknown format ${JSON.stringify(m['format'])?.slice(0, 60)} (expected ${MANIFEST_FORMAT})` };
  if (typeof m['createdAt'] !== 'string') return { error: 'createdAt is missing' };
  if (m['commit'] !== undefined && (typeof m['commit'] !== 'string' || !/^[0-9a-f]{7,64}$/.test(m['commit'])))
    return { error: 'commit is not a commit hash' };
  for (const k of ['rootDir', 'outDir'] as const)
    if (m[k] !== undefined && !isInsidePath(m[k] as string)) return { error: `${k} is not a relative path inside the root` };
  const modules = m['modules'];
  if (!modules || typeof modules !== 'object' || Array.isArray(modules)) return { error: 'modules is not an object' };
  const ids = Object.keys(modules);
  if (ids.length > MAX_MANIFEST_MODULES) return { error: `more than ${MAX_MANIFEST_MODULES} modules` };
  for (const id of ids) {
    const e = (modules as Record<string, unknown>)[id] as Record<string, unknown> | undefined;
    if (!isInsidePath(id) || !/\.(ts|tsx|mts|cts)$/.test(id))
      return { error: `module id ${JSON.stringify(id).slice(0, 120)} is not a relative .ts path` };
    if (!e || typeof e !== 'object' || typeof e['hash'] !== 'string' || !/^[0-9a-f]{64}$/.test(e['hash']))
      return { error: `module ${id.slice(0, 120)}: hash is not sha256 hex` };
    if (!isInsidePath(e['js'] as string)) return { error: `module ${id.slice(0, 120)}: js is not a relative path inside the root` };
  }
  return { manifest: m as unknown as BuildManifest };
}

/**
 * The manifest in `root`, or undefined when there is none. A manifest that is too large or invalid
 * is reported through `warn` and ignored (the host then behaves as without one).
 */
export function readManifest(root: string, warn?: (message: string) => void): BuildManifest | undefined {
  const file = join(root, MANIFEST_FILE);
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return undefined;
  }
  if (size > MAX_MANIFEST_BYTES) {
    warn?.(`${file} is larger than ${MAX_MANIFEST_BYTES} bytes: ignored`);
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    warn?.(`${file} cannot be read: ${(e as Error).message.slice(0, 200)}; ignored`);
    return undefined;
  }
  const v = validateManifest(parsed);
  if ('error' in v) {
    warn?.(`${file} is not a valid build manifest (${v.error}); ignored`);
    return undefined;
  }
  return v.manifest;
}

/** compiled file (relative POSIX path) → module id, for a manifest. */
export function compiledIndex(m: BuildManifest): Map<string, string> {
  const out = new Map<string, string>();
  for (const [id, e] of Object.entries(m.modules)) out.set(e.js, id);
  return out;
}
