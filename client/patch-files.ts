/**
 * PATCH arguments → one PatchSet. An argument is a `.ts` file (module id = its path relative to the
 * root, POSIX separators), a directory (its `.ts` files, recursively, skipping node_modules, dot
 * directories and `.d.ts`), or a `.json` patch set file (`{id?, message?, files, base?, verify?, signature?}`;
 * a signed one may also carry `compiled`, from `livepatch sign --compile`).
 * A signed set (written by `livepatch sign`) is sent exactly as signed: it cannot be merged with other
 * arguments or changed by --id, -m or --verify, since any change would void its signature.
 * Everything is read and validated locally, with the agent's own limits, so a bad argument is a usage
 * error (exit 2) before any connection is opened.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { LivepatchError, parseFrame, patchSetSchema, type PatchSet } from '../shared';

/** Largest single source the agent accepts (same as the op schema). */
export const MAX_SOURCE_BYTES = 16 * 1024 * 1024;
/** Most modules one patch set may name (same as the op schema). */
export const MAX_FILES = 2000;

export interface PatchArgsOptions {
  /** Project root that module ids are relative to (default: cwd). */
  root?: string;
  /** Patch id (overrides a .json file's id). */
  id?: string;
  /** Message (overrides a .json file's message). */
  message?: string;
  /** Path of a verify module (overrides a .json file's verify). */
  verifyFile?: string;
  /** Drop a .json set's signature and treat it like an unsigned one (`livepatch sign` signs anew). */
  dropSignature?: boolean;
}

function usage(message: string): LivepatchError {
  return new LivepatchError('LP_ERR_CLI_USAGE', message);
}

function readSource(path: string): string {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw usage(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (size > MAX_SOURCE_BYTES) throw usage(`${path} is larger than ${MAX_SOURCE_BYTES} bytes`);
  return readFileSync(path, 'utf8');
}

/** The module id of `file` under `root`: relative, POSIX separators; refuses files outside the root. */
export function moduleIdOf(root: string, file: string): string {
  const rel = relative(resolve(root), resolve(file));
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
    throw usage(`${file} is outside the project root ${resolve(root)}: pass --root DIR`);
  }
  return rel.split(sep).join('/');
}

/** Every `.ts` (not `.d.ts`) file under `dir`, sorted, skipping node_modules and dot directories. */
export function listTsFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) {
      if (name !== 'node_modules' && !name.startsWith('.')) listTsFiles(p, out);
    } else if (st.isFile() && name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
    if (out.length > MAX_FILES) throw usage(`${dir} holds more than ${MAX_FILES} .ts files`);
  }
  return out;
}

function readPatchJson(path: string): PatchSet {
  const parsed = parseFrame(readSource(path));
  if (!parsed.ok) throw usage(`${path} is not a valid patch set: ${parsed.reason}`);
  const checked = patchSetSchema.safeParse(parsed.value);
  if (!checked.success) {
    const i = checked.error.issues[0];
    throw usage(`${path} is not a valid patch set: ${i ? `${i.path.join('.') || '(top)'}: ${i.message}` : 'invalid'}`);
  }
  return checked.data;
}

function addFile(files: Record<string, string>, id: string, source: string, from: string): void {
  const prev = files[id];
  if (prev !== undefined && prev !== source) throw usage(`module ${id} is given twice with different sources (last from ${from})`);
  files[id] = source;
}

/** Read PATCH arguments into one PatchSet. Throws LP_ERR_CLI_USAGE (exit 2) on any bad input. */
export function readPatchArgs(args: string[], opts: PatchArgsOptions = {}): PatchSet {
  if (args.length === 0) throw usage('no PATCH given: pass .ts files, directories or a .json patch set');
  const root = opts.root ?? process.cwd();
  const files: Record<string, string> = {};
  let base: Record<string, string> | undefined;
  let fromJson: PatchSet | undefined;
  for (const arg of args) {
    let st;
    try {
      st = statSync(arg);
    } catch {
      throw usage(`no such file or directory: ${arg}`);
    }
    if (st.isDirectory()) {
      const found = listTsFiles(arg);
      if (found.length === 0) throw usage(`${arg} holds no .ts files`);
      for (const f of found) addFile(files, moduleIdOf(root, f), readSource(f), f);
    } else if (arg.endsWith('.json')) {
      const set = readPatchJson(arg);
      if (opts.dropSignature) delete set.signature;
      if (fromJson) throw usage('give at most one .json patch set');
      fromJson = set;
      for (const [id, src] of Object.entries(set.files)) addFile(files, id, src, arg);
      if (set.base) base = { ...set.base };
    } else if (arg.endsWith('.ts') && !arg.endsWith('.d.ts')) {
      addFile(files, moduleIdOf(root, arg), readSource(arg), arg);
    } else {
      throw usage(`${arg} is not a .ts file, a directory or a .json patch set`);
    }
  }
  if (fromJson?.signature) {
    if (args.length > 1) throw usage('a signed patch set is sent as it was signed: give it as the only PATCH argument');
    const changed = [
      opts.id !== undefined && '--id',
      opts.message !== undefined && '-m',
      opts.verifyFile !== undefined && '--verify',
    ].filter(Boolean);
    if (changed.length > 0)
      throw usage(`a signed patch set cannot be changed by ${changed.join(', ')}: that would void its signature (sign it again instead)`);
    return fromJson;
  }
  if (Object.keys(files).length > MAX_FILES) throw usage(`a patch set may name at most ${MAX_FILES} modules`);
  const set: PatchSet = { files };
  const id = opts.id ?? fromJson?.id;
  const message = opts.message ?? fromJson?.message;
  const verify = opts.verifyFile !== undefined ? readSource(opts.verifyFile) : fromJson?.verify;
  if (id !== undefined) set.id = id;
  if (message !== undefined) set.message = message;
  if (base) set.base = base;
  if (verify !== undefined) set.verify = verify;
  const final = patchSetSchema.safeParse(set);
  if (!final.success) throw usage(`invalid patch set: ${final.error.issues[0]?.message ?? 'invalid'}`);
  return set;
}
