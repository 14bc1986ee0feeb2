/**
 * Whole-program checks with TypeScript's native compiler (the `typescript@7` package, installed as
 * `typescript-native`), through its synchronous API: the compiler runs in its own process, reads the
 * project from disk, and asks this side for every file so that the overlay (live patched modules and
 * a patch set) is laid over the disk without writing anything.
 *
 * Same contract as ProgramChecker.check (shared/typecheck.ts): the whole program's diagnostics in
 * the wire shape. A cold check builds and checks the whole program in a fraction of the time the
 * JavaScript compiler needs to build it (BENCHMARKS.md § Cold applies), so no state is persisted;
 * later checks tell the compiler which files changed, and check only those when the caller knows
 * their declarations did not change (`check`).
 *
 * The API is marked unstable upstream, so the package is pinned to one version and this file is the
 * only one that touches it. It is loaded lazily: nothing here runs unless the engine is chosen.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, basename, relative, resolve, sep } from 'node:path';
import { sortDiagnostics, type Diagnostic, type DiagnosticCategory } from './patch';
import type { CheckProgress, ProgramCheckResult } from './typecheck';

/** The package name the native compiler is installed under (an npm alias of `typescript@7`). */
const PACKAGE = 'typescript-native';

/** The parts of the native API used here (`typescript-native/unstable/sync`). */
interface NativeDiagnostic {
  readonly fileName?: string;
  readonly pos: number;
  readonly code: number;
  readonly category: number;
  readonly text: string;
  readonly messageChain?: readonly NativeDiagnostic[];
}
interface NativeProgram {
  getSourceFileNames(): readonly string[];
  getConfigFileParsingDiagnostics(): readonly NativeDiagnostic[];
  getProgramDiagnostics(): readonly NativeDiagnostic[];
  getSyntacticDiagnostics(file?: string): readonly NativeDiagnostic[];
  getGlobalDiagnostics(): readonly NativeDiagnostic[];
  getSemanticDiagnostics(file?: string): readonly NativeDiagnostic[];
}
interface NativeSnapshot {
  getProject(configFileName: string): { program: NativeProgram } | undefined;
  dispose(): void;
}
interface NativeFileSystem {
  readFile?: (fileName: string) => string | null | undefined;
  fileExists?: (fileName: string) => boolean | undefined;
  getAccessibleEntries?: (dir: string) => { files: string[]; directories: string[] } | undefined;
}
interface NativeApi {
  parseConfigFile(file: string): { options: Record<string, unknown>; fileNames: string[] };
  updateSnapshot(params: {
    openProjects?: string[];
    fileChanges?: { changed?: string[]; created?: string[]; deleted?: string[] };
  }): NativeSnapshot;
  close(): void;
}
type NativeApiClass = new (options: { cwd?: string; fs?: NativeFileSystem }) => NativeApi;

/** Why the native compiler cannot be used here, or undefined when its package is installed. */
export function nativeUnavailable(): string | undefined {
  try {
    require.resolve(`${PACKAGE}/unstable/sync`);
    return undefined;
  } catch {
    return `the ${PACKAGE} package (typescript@7) is not installed`;
  }
}

/**
 * A tsconfig setting that the native compiler no longer supports, or a default that changed between
 * the two compilers, named as in a tsconfig; undefined when there is none. `options` are the native
 * compiler's parse of the tsconfig: only what the tsconfig sets (the enums' values are the same in
 * both compilers). A quick test before building a program; what it cannot see (a default that only
 * matters to code the project does not have yet) is in docs/patching.md.
 */
export function nativeIncompatibility(options: Record<string, unknown>): string | undefined {
  const removed = ' (removed in TypeScript 7)';
  const unset = (name: string): string => `no "${name}" (its default changed in TypeScript 7)`;
  for (const name of ['module', 'target', 'strict', 'types']) if (options[name] === undefined) return unset(name);
  const resolution = options['moduleResolution'];
  const module = options['module'] as number;
  const MODULE: Record<number, string> = { 0: 'None', 1: 'CommonJS', 2: 'AMD', 3: 'UMD', 4: 'System' };
  // ModuleResolutionKind: 1 classic, 2 node10.
  if (resolution === 1 || resolution === 2) return `"moduleResolution": "${resolution === 1 ? 'classic' : 'node'}"${removed}`;
  // Without a setting, these mean node10 resolution to the JavaScript compiler and not to the native one.
  if (resolution === undefined && module >= 1 && module <= 3)
    return `"module": "${MODULE[module]}" without "moduleResolution" (node10 resolution${removed})`;
  if (module >= 0 && module <= 4 && module !== 1) return `"module": "${MODULE[module]}"${removed}`;
  // ScriptTarget: 0 ES3, 1 ES5.
  const target = options['target'];
  if (target === 0 || target === 1) return `"target": "${target === 0 ? 'ES3' : 'ES5'}"${removed}`;
  for (const k of ['outFile', 'baseUrl']) if (options[k] !== undefined) return `"${k}"${removed}`;
  for (const k of ['esModuleInterop', 'allowSyntheticDefaultImports', 'alwaysStrict'])
    if (options[k] === false) return `"${k}": false${removed}`;
  return undefined;
}

const CATEGORY: Record<number, DiagnosticCategory> = { 0: 'warning', 1: 'error', 2: 'suggestion', 3: 'message' };

/** tsc's flattening of a message chain: each level on its own line, indented two spaces deeper. */
function flatten(d: NativeDiagnostic, indent = 0): string {
  let out = indent > 0 ? `\n${'  '.repeat(indent)}${d.text}` : d.text;
  for (const next of d.messageChain ?? []) out += flatten(next, indent + 1);
  return out;
}

/**
 * One project's native checker. `check` throws when the compiler cannot run (its process failed to
 * start or died); the caller decides whether to fall back to the JavaScript compiler.
 */
export class NativeChecker {
  readonly root: string;
  readonly tsconfigPath: string;
  private api: NativeApi | undefined;
  private snapshot: NativeSnapshot | undefined;
  /** The overlay the compiler currently sees (absolute path → text). */
  private overlay = new Map<string, string>();
  /** Directories holding overlay files that are not on disk (for directory listings). */
  private overlayDirs = new Map<string, string[]>();
  /** Whether the compiler asks for file existence and directory listings (needed for new files). */
  private listing = false;
  /** Each file's diagnostics as of the last check (by absolute path; '' for those of no file), when kept. */
  private byFile: Map<string, { syntactic: Diagnostic[]; semantic: Diagnostic[] }> | undefined;
  /** The program's global diagnostics, from its last whole check. */
  private global: Diagnostic[] = [];

  constructor(root: string, tsconfigPath?: string) {
    this.root = resolve(root);
    this.tsconfigPath = resolve(this.root, tsconfigPath ?? 'tsconfig.json');
  }

  /** A tsconfig setting this compiler would not check as the project builds (`nativeIncompatibility`). */
  incompatibility(): string | undefined {
    this.api ??= this.start(false);
    return nativeIncompatibility(this.api.parseConfigFile(this.tsconfigPath).options);
  }

  /**
   * Check the program with `overlay` (absolute path → source) laid over the disk; every diagnostic of
   * the program is in the result. The native compiler checks every file of a new program (it keeps
   * nothing from the previous one), about 0.1 s per 300 small modules, so when the caller knows that
   * no changed file's declarations changed (`declarationsChanged: false`: no other file's
   * diagnostics can then change), only the changed files are checked, and the other files'
   * diagnostics are those of the previous check. Without it, or with files created or deleted, the
   * whole program is checked.
   */
  check(
    overlay: Map<string, string> | Record<string, string>,
    onProgress?: (p: CheckProgress) => void,
    opts: { declarationsChanged?: boolean } = {},
  ): ProgramCheckResult {
    const started = Date.now();
    const next = new Map<string, string>(overlay instanceof Map ? overlay : Object.entries(overlay));
    onProgress?.({ phase: 'program', done: 0, total: 1 });
    const { snapshot, changed, whole } = this.update(next);
    const program = snapshot.getProject(this.tsconfigPath)?.program;
    if (!program) throw new Error(`the native compiler did not load ${this.tsconfigPath}`);
    const names = program.getSourceFileNames();
    const files = names.filter((f) => !this.isLibrary(f)).length;
    const texts = new Map<string, string | undefined>();
    const convert = (d: NativeDiagnostic): Diagnostic => this.toDiagnostic(d, texts);
    let checked = 0;
    const inProgram = new Set(names.map((f) => resolve(f)));
    // A changed file the program does not list under that name (outside the tsconfig's files, or
    // reached through a symbolic link): a whole check, so no change goes unchecked.
    const partial =
      this.byFile !== undefined && !whole && opts.declarationsChanged === false && changed.every((f) => inProgram.has(resolve(f)));
    if (!partial) {
      onProgress?.({ phase: 'check', done: 0, total: files });
      const syntactic = program.getSyntacticDiagnostics();
      // Semantic before global: the native compiler checks every file to find the global ones.
      const semantic = syntactic.length === 0 ? program.getSemanticDiagnostics() : [];
      this.global = program.getGlobalDiagnostics().map(convert);
      const byFile = new Map<string, { syntactic: Diagnostic[]; semantic: Diagnostic[] }>();
      const entry = (f: string | undefined) => {
        const key = f === undefined ? '' : resolve(f);
        let e = byFile.get(key);
        if (!e) byFile.set(key, (e = { syntactic: [], semantic: [] }));
        return e;
      };
      for (const d of syntactic) entry(d.fileName).syntactic.push(convert(d));
      for (const d of semantic) entry(d.fileName).semantic.push(convert(d));
      // With syntax errors there is no semantic check to keep: the next check is a whole one again.
      this.byFile = syntactic.length === 0 ? byFile : undefined;
      checked = syntactic.length === 0 ? files : 0;
      onProgress?.({ phase: 'check', done: files, total: files });
      return this.result(program, convert, byFile, files, checked, started);
    }
    const byFile = this.byFile!;
    onProgress?.({ phase: 'check', done: 0, total: changed.length });
    for (const f of changed) {
      const syntactic = program.getSyntacticDiagnostics(f).map(convert);
      const semantic = syntactic.length === 0 ? program.getSemanticDiagnostics(f).map(convert) : [];
      byFile.set(resolve(f), { syntactic, semantic });
      checked++;
    }
    onProgress?.({ phase: 'check', done: changed.length, total: changed.length });
    return this.result(program, convert, byFile, files, checked, started);
  }

  /** The whole program's diagnostics: config and options now, global and per file as last checked. */
  private result(
    program: NativeProgram,
    convert: (d: NativeDiagnostic) => Diagnostic,
    byFile: Map<string, { syntactic: Diagnostic[]; semantic: Diagnostic[] }>,
    files: number,
    checked: number,
    started: number,
  ): ProgramCheckResult {
    const all = [
      ...program.getConfigFileParsingDiagnostics().map(convert),
      ...program.getProgramDiagnostics().map(convert),
      ...this.global,
      ...[...byFile.values()].flatMap((e) => [...e.syntactic, ...e.semantic]),
    ];
    const seen = new Set<string>();
    const diagnostics: Diagnostic[] = [];
    for (const d of all) {
      // Program and config diagnostics can be reported by more than one of the calls above.
      const key = `${d.file}\0${d.line}\0${d.column}\0${d.code}\0${d.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      diagnostics.push(d);
    }
    return {
      diagnostics: sortDiagnostics(diagnostics),
      syntactic: sortDiagnostics([...byFile.values()].flatMap((e) => e.syntactic)),
      hasErrors: diagnostics.some((d) => d.category === 'error'),
      files,
      checked,
      durationMs: Date.now() - started,
      engine: 'native',
    };
  }

  /** Stop the compiler's process. */
  close(): void {
    try {
      this.snapshot?.dispose();
    } catch {
      // The process is already gone.
    }
    this.snapshot = undefined;
    this.byFile = undefined;
    try {
      this.api?.close();
    } catch {
      // Same.
    }
    this.api = undefined;
  }

  /**
   * A snapshot of the program with `next` as the overlay (the first one opens the project), the
   * files whose text changed since the last one, and whether the whole program is to be checked
   * (a new project, or files created or deleted).
   */
  private update(next: Map<string, string>): { snapshot: NativeSnapshot; changed: string[]; whole: boolean } {
    const previous = this.overlay;
    this.setOverlay(next);
    // New files need two more callbacks (existence, directory listings: about as many calls again as
    // files read), so they are set up only once a patch brings a file that is not on disk.
    if (this.overlayDirs.size > 0 && !this.listing) this.close();
    if (!this.api || !this.snapshot) {
      this.api ??= this.start(this.overlayDirs.size > 0);
      this.snapshot = this.api.updateSnapshot({ openProjects: [this.tsconfigPath] });
      return { snapshot: this.snapshot, changed: [...next.keys()], whole: true };
    }
    const changed: string[] = [];
    const created: string[] = [];
    const deleted: string[] = [];
    for (const [file, text] of next) {
      if (previous.get(file) === text) continue;
      (previous.has(file) || existsSync(file) ? changed : created).push(file);
    }
    for (const file of previous.keys()) if (!next.has(file)) (existsSync(file) ? changed : deleted).push(file);
    if (changed.length + created.length + deleted.length === 0) return { snapshot: this.snapshot, changed, whole: false };
    const snapshot = this.api.updateSnapshot({ fileChanges: { changed, created, deleted } });
    this.snapshot.dispose();
    this.snapshot = snapshot;
    return { snapshot, changed: [...changed, ...created, ...deleted], whole: created.length + deleted.length > 0 };
  }

  private setOverlay(next: Map<string, string>): void {
    this.overlay = next;
    this.overlayDirs = new Map();
    for (const file of next.keys()) {
      if (existsSync(file)) continue;
      const dir = dirname(file);
      this.overlayDirs.set(dir, [...(this.overlayDirs.get(dir) ?? []), basename(file)]);
    }
  }

  private start(listing: boolean): NativeApi {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { API } = require(`${PACKAGE}/unstable/sync`) as { API: NativeApiClass };
    this.listing = listing;
    // undefined from a callback: the compiler reads the disk itself.
    const fs: NativeFileSystem = { readFile: (f) => this.overlay.get(resolve(f)) };
    if (listing) {
      fs.fileExists = (f) => (this.overlay.has(resolve(f)) ? true : undefined);
      fs.getAccessibleEntries = (d) => this.entries(resolve(d));
    }
    return new API({ cwd: this.root, fs });
  }

  /** A directory's listing with the overlay's new files in it; undefined (the disk's) when it has none. */
  private entries(dir: string): { files: string[]; directories: string[] } | undefined {
    const extra = this.overlayDirs.get(dir);
    if (!extra) return undefined;
    const files: string[] = [];
    const directories: string[] = [];
    try {
      for (const e of readdirSync(dir, { withFileTypes: true })) (e.isDirectory() ? directories : files).push(e.name);
    } catch {
      // A directory that exists only in the overlay.
    }
    return { files: [...new Set([...files, ...extra])], directories };
  }

  private isLibrary(file: string): boolean {
    return file.includes('/node_modules/') || !resolve(file).startsWith(this.root + sep);
  }

  private toDiagnostic(d: NativeDiagnostic, texts: Map<string, string | undefined>): Diagnostic {
    const out: Diagnostic = { code: d.code, category: CATEGORY[d.category] ?? 'error', message: flatten(d) };
    if (d.fileName) {
      const file = resolve(d.fileName);
      out.file = relative(this.root, file).split(sep).join('/');
      if (!texts.has(file)) texts.set(file, this.textOf(file));
      const text = texts.get(file);
      if (text !== undefined) {
        const { line, column } = lineAndColumn(text, d.pos);
        out.line = line;
        out.column = column;
      }
    }
    return out;
  }

  private textOf(file: string): string | undefined {
    const o = this.overlay.get(file);
    if (o !== undefined) return o;
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
  }
}

/** 1-based line and column (in UTF-16 units, as tsc counts) of offset `pos` in `text`. */
function lineAndColumn(text: string, pos: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  const end = Math.min(pos, text.length);
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c === 10 || (c === 13 && text.charCodeAt(i + 1) !== 10)) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: end - start + 1 };
}
