/**
 * The whole-program type checker core: the project's tsconfig plus an overlay of in-memory sources
 * (live patched modules + a patch set), checked incrementally with an EmitAndSemanticDiagnostics
 * builder program. Pure and synchronous: the agent runs it in a worker thread, the CLI's offline
 * `livepatch check` runs it directly. Knows nothing of engines, sockets or journals.
 *
 * Incremental reuse comes from three places: parsed SourceFiles are cached by path and text (lib and
 * node_modules files are parsed once), the previous builder program is handed to the next one, and
 * the builder only re-checks files whose own text changed or whose dependencies' declaration shape
 * changed. Transitive dependents are re-checked too (unless `assumeDirectOnly`), so a signature change
 * that flows through a re-export is still caught.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import * as ts from 'typescript';
import { LivepatchError } from './errors';
import { sortDiagnostics, type Diagnostic, type DiagnosticCategory } from './patch';
import { isEsModuleFile } from './module-format';
import type { CheckerEngine } from './ops';

/** One check's outcome. `diagnostics` holds every diagnostic in the program, syntax first. */
export interface ProgramCheckResult {
  diagnostics: Diagnostic[];
  /** The subset of `diagnostics` that are syntax errors (parse errors). */
  syntactic: Diagnostic[];
  /** Whether any diagnostic has category 'error'. */
  hasErrors: boolean;
  /** Project source files in the program (lib and node_modules files excluded). */
  files: number;
  /** Files whose semantic diagnostics were (re)computed by this check. */
  checked: number;
  durationMs: number;
  /** Which compiler checked: TypeScript's JavaScript compiler, or its native one (shared/native-typecheck.ts). */
  engine?: CheckerEngine;
}

/** Progress of one check: building the program, then checking affected files. */
export interface CheckProgress {
  phase: 'program' | 'check';
  done: number;
  total: number;
}

/** Checker settings. */
export interface ProgramCheckerOptions {
  /** Pass assumeChangesOnlyAffectDirectDependencies to the builder: faster, misses transitive breakage. */
  assumeDirectOnly?: boolean;
  /**
   * Without a tsconfig, run with default options and no project files instead of throwing
   * (`configMissing` is then true and `check` throws LP_ERR_PATCH_NO_SOURCES; `checkScript` works).
   */
  allowMissingConfig?: boolean;
  /**
   * Persist the builder's incremental state (a tsbuildinfo) in this file, and start from it: a cold
   * check then re-checks only the files whose text changed since the state was written (and their
   * dependents), instead of the whole program. Written by `saveState()`.
   */
  stateFile?: string;
}

/** The version of the TypeScript compiler this checker runs. */
export const TYPESCRIPT_VERSION: string = ts.version;

/** A persisted state larger than this is ignored (it is rebuilt instead). */
const MAX_STATE_BYTES = 64 * 1024 * 1024;

/** Options of a project without a tsconfig (script checks only). */
const DEFAULT_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.CommonJS,
  strict: true,
  esModuleInterop: true,
  skipLibCheck: true,
};

/** One script check: the script's SourceFile in the program and its own diagnostics (syntax first). */
export interface ScriptCheckResult {
  sourceFile: ts.SourceFile;
  diagnostics: ts.Diagnostic[];
}

/** One transpiled module: CommonJS text and its syntax diagnostics. */
export interface TranspileOutput {
  js: string;
  diagnostics: Diagnostic[];
}

const CATEGORY: Record<ts.DiagnosticCategory, DiagnosticCategory> = {
  [ts.DiagnosticCategory.Warning]: 'warning',
  [ts.DiagnosticCategory.Error]: 'error',
  [ts.DiagnosticCategory.Suggestion]: 'suggestion',
  [ts.DiagnosticCategory.Message]: 'message',
};

/** Parse `tsconfigPath` (default `<root>/tsconfig.json`); throws LP_ERR_PATCH_NO_SOURCES when it is missing or broken. */
export function loadTsconfig(root: string, tsconfigPath?: string): ts.ParsedCommandLine {
  const file = resolve(root, tsconfigPath ?? 'tsconfig.json');
  if (!existsSync(file)) throw new LivepatchError('LP_ERR_PATCH_NO_SOURCES', `No tsconfig at ${file}; patching is disabled`);
  let fatal: string | undefined;
  const parsed = ts.getParsedCommandLineOfConfigFile(
    file,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        fatal = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      },
    },
  );
  if (!parsed || fatal) throw new LivepatchError('LP_ERR_PATCH_NO_SOURCES', `Cannot read ${file}: ${fatal ?? 'unknown error'}`);
  return parsed;
}

/** Convert a TS diagnostic to the wire shape, with `file` relative to `root` (POSIX). */
export function toDiagnostic(d: ts.Diagnostic, root: string): Diagnostic {
  const out: Diagnostic = {
    code: d.code,
    category: CATEGORY[d.category],
    message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
  };
  if (d.file) {
    out.file = relative(root, d.file.fileName).split(sep).join('/');
    if (d.start !== undefined) {
      const lc = d.file.getLineAndCharacterOfPosition(d.start);
      out.line = lc.line + 1;
      out.column = lc.character + 1;
    }
  }
  return out;
}

/**
 * Compiler options for runtime code: the project's, no side outputs, forced to CommonJS, or with
 * `esm` to ES module syntax (for files Node loads as ES modules).
 */
export function runtimeOptions(options: ts.CompilerOptions, esm = false): ts.CompilerOptions {
  const o: ts.CompilerOptions = { ...options, module: esm ? ts.ModuleKind.ESNext : ts.ModuleKind.CommonJS };
  for (const k of [
    'declaration',
    'declarationMap',
    'sourceMap',
    'composite',
    'emitDeclarationOnly',
    'noEmit',
    'incremental',
    'tsBuildInfoFile',
    'outFile',
    'out',
    'rootDir',
    'rootDirs',
    'outDir',
  ] as const)
    delete o[k];
  o.inlineSourceMap = false;
  if (
    o.moduleResolution === ts.ModuleResolutionKind.Node16 ||
    o.moduleResolution === ts.ModuleResolutionKind.NodeNext ||
    o.moduleResolution === ts.ModuleResolutionKind.Bundler
  ) {
    o.moduleResolution = ts.ModuleResolutionKind.Node10;
  }
  return o;
}

/**
 * The incremental whole-program checker. Construct once per project; call `check` with the full
 * overlay each time (absolute path → text; it replaces, not adds to, the previous overlay).
 */
export class ProgramChecker {
  readonly root: string;
  readonly tsconfigPath: string;
  readonly options: ts.CompilerOptions;
  readonly fileNames: readonly string[];
  /** True when there was no tsconfig and `allowMissingConfig` was set. */
  readonly configMissing: boolean;
  private readonly checkOptions: ts.CompilerOptions;
  private readonly scriptOptions: ts.CompilerOptions;
  private scriptProgram: ts.Program | undefined;
  private readonly host: ts.CompilerHost;
  private readonly stateFile: string | undefined;
  /** The state emitted by the last check, not yet written. */
  private pendingState: string | undefined;
  /** Whether the first check started from a persisted state (for reports and benchmarks). */
  stateReused = false;
  private readonly cache = new Map<string, { text: string; sf: ts.SourceFile }>();
  private readonly diskText = new Map<string, { mtimeMs: number; text: string | undefined }>();
  private overlay = new Map<string, string>();
  private builder: ts.EmitAndSemanticDiagnosticsBuilderProgram | undefined;
  private readonly libDir: string;
  /** Set during a check: reports files loaded while the program is built (the long part when cold). */
  private onFileLoaded: ((fileName: string) => void) | undefined;

  constructor(root: string, tsconfigPath?: string, opts: ProgramCheckerOptions = {}) {
    this.root = resolve(root);
    this.tsconfigPath = resolve(this.root, tsconfigPath ?? 'tsconfig.json');
    this.configMissing = opts.allowMissingConfig === true && !existsSync(this.tsconfigPath);
    const parsed: Pick<ts.ParsedCommandLine, 'options' | 'fileNames'> = this.configMissing
      ? { options: { ...DEFAULT_OPTIONS }, fileNames: [] }
      : loadTsconfig(this.root, this.tsconfigPath);
    this.options = parsed.options;
    this.fileNames = parsed.fileNames.map((f) => resolve(f));
    // Declarations are emitted to a no-op writer only so the builder can compare declaration shapes.
    this.checkOptions = {
      ...parsed.options,
      noEmit: false,
      declaration: true,
      emitDeclarationOnly: true,
      declarationMap: false,
      sourceMap: false,
      composite: false,
      incremental: opts.stateFile !== undefined,
      ...(opts.stateFile !== undefined ? { tsBuildInfoFile: resolve(opts.stateFile) } : { tsBuildInfoFile: undefined }),
      assumeChangesOnlyAffectDirectDependencies: opts.assumeDirectOnly === true,
    };
    this.stateFile = opts.stateFile !== undefined ? resolve(opts.stateFile) : undefined;
    // Script checks (REPL input) sit outside rootDir and emit nothing; the options that shape parsing and
    // binding stay the project's, so both programs share one set of parsed files.
    const {
      rootDir: _r,
      outDir: _o,
      declaration: _d,
      declarationMap: _dm,
      composite: _c,
      incremental: _i,
      tsBuildInfoFile: _t,
      emitDeclarationOnly: _e,
      ...rest
    } = parsed.options;
    this.scriptOptions = { ...rest, noEmit: true, noUnusedLocals: false, noUnusedParameters: false };
    this.libDir = dirname(ts.getDefaultLibFilePath(this.checkOptions));
    this.host = this.createHost();
  }

  /** Type-check the whole program with `overlay` (absolute path → source) laid over the disk. */
  check(overlay: Map<string, string> | Record<string, string>, onProgress?: (p: CheckProgress) => void): ProgramCheckResult {
    const started = Date.now();
    if (this.configMissing)
      throw new LivepatchError('LP_ERR_PATCH_NO_SOURCES', `No tsconfig at ${this.tsconfigPath}; patching is disabled`);
    this.overlay = toOverlay(overlay);
    const rootNames = [...new Set([...this.fileNames, ...[...this.overlay.keys()].filter((f) => /\.(ts|tsx|mts|cts)$/.test(f))])];
    onProgress?.({ phase: 'program', done: 0, total: rootNames.length });
    let loaded = 0;
    const roots = new Set(rootNames);
    this.onFileLoaded = (f) => {
      if (roots.has(resolve(f))) onProgress?.({ phase: 'program', done: Math.min(++loaded, rootNames.length), total: rootNames.length });
    };
    let builder: ts.EmitAndSemanticDiagnosticsBuilderProgram;
    try {
      builder = ts.createEmitAndSemanticDiagnosticsBuilderProgram(
        rootNames,
        this.checkOptions,
        this.host,
        this.builder ?? this.readState(),
      );
    } finally {
      this.onFileLoaded = undefined;
    }
    this.builder = builder;
    const program = builder.getProgram();
    const projectFiles = program.getSourceFiles().filter((f) => !this.isLibrary(f.fileName));
    onProgress?.({ phase: 'program', done: rootNames.length, total: rootNames.length });

    const syntactic = builder.getSyntacticDiagnostics();
    let checked = 0;
    if (syntactic.length === 0) {
      // Walk the affected files one by one so progress can be reported; results are cached in the builder.
      for (;;) {
        const next = builder.getSemanticDiagnosticsOfNextAffectedFile();
        if (!next) break;
        checked += next.affected === program ? projectFiles.length : this.isLibrary((next.affected as ts.SourceFile).fileName) ? 0 : 1;
        onProgress?.({ phase: 'check', done: Math.min(checked, projectFiles.length), total: projectFiles.length });
      }
      // Drain the declaration emit so the builder's pending-emit state does not grow between checks.
      // With a state file, the emit ends with the new state: kept in memory until saveState().
      builder.emit(
        undefined,
        (name, text) => {
          if (this.stateFile !== undefined && resolve(name) === this.stateFile) this.pendingState = text;
        },
        undefined,
        true,
      );
    }
    const all = [
      ...builder.getConfigFileParsingDiagnostics(),
      ...builder.getOptionsDiagnostics(),
      ...syntactic,
      ...builder.getGlobalDiagnostics(),
      ...(syntactic.length === 0 ? builder.getSemanticDiagnostics() : []),
    ];
    const diagnostics = sortDiagnostics(all.map((d) => toDiagnostic(d, this.root)));
    return {
      diagnostics,
      syntactic: sortDiagnostics(syntactic.map((d) => toDiagnostic(d, this.root))),
      hasErrors: diagnostics.some((d) => d.category === 'error'),
      files: projectFiles.length,
      checked,
      durationMs: Date.now() - started,
      engine: 'typescript',
    };
  }

  /**
   * Write the state of the last check to the state file (atomically: a crash mid-write leaves the
   * previous one). Separate from `check` so a caller can answer first and write after. Never throws:
   * a state that cannot be written only makes the next cold check slower.
   */
  saveState(): boolean {
    const text = this.pendingState;
    this.pendingState = undefined;
    if (text === undefined || this.stateFile === undefined) return false;
    const tmp = `${this.stateFile}.${process.pid}.tmp`;
    try {
      mkdirSync(dirname(this.stateFile), { recursive: true, mode: 0o700 });
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, this.stateFile);
      return true;
    } catch {
      try {
        unlinkSync(tmp);
      } catch {
        // Nothing was written.
      }
      return false;
    }
  }

  /** The persisted state as an old builder program, or undefined (none, too large, unreadable, other TS version). */
  private readState(): ts.EmitAndSemanticDiagnosticsBuilderProgram | undefined {
    if (this.stateFile === undefined) return undefined;
    try {
      if (statSync(this.stateFile).size > MAX_STATE_BYTES) return undefined;
      const old = ts.readBuilderProgram(this.checkOptions, {
        useCaseSensitiveFileNames: () => ts.sys.useCaseSensitiveFileNames,
        getCurrentDirectory: () => this.root,
        readFile: (f) => (resolve(f) === this.stateFile ? readFileSync(f, 'utf8') : undefined),
      });
      this.stateReused = old !== undefined;
      return old;
    } catch {
      return undefined;
    }
  }

  /**
   * Check one script (e.g. REPL input in a virtual file) against the project: a program of `roots`
   * (which include `file`) with `overlay` laid over the disk, and only `file`'s own diagnostics. The
   * project's files are pulled in by import and share the parsed-file cache with `check`; the previous
   * script program is reused when the roots are the same, so a session's next input is cheap.
   */
  checkScript(overlay: Map<string, string> | Record<string, string>, roots: string[], file: string): ScriptCheckResult | undefined {
    this.overlay = toOverlay(overlay);
    const rootNames = roots.map((f) => resolve(f));
    const program = ts.createProgram({ rootNames, options: this.scriptOptions, host: this.host, oldProgram: this.scriptProgram });
    this.scriptProgram = program;
    const sf = program.getSourceFile(resolve(file));
    if (!sf) return undefined;
    return { sourceFile: sf, diagnostics: [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)] };
  }

  /**
   * Transpile one module (absolute path or id relative to root) with the project's options, to the
   * format Node gives the file: CommonJS, or ES module syntax for an ES module.
   */
  transpile(file: string, text: string): TranspileOutput {
    const fileName = isAbsolute(file) ? file : join(this.root, file);
    const out = ts.transpileModule(text, {
      compilerOptions: runtimeOptions(this.options, isEsModuleFile(fileName)),
      fileName,
      reportDiagnostics: true,
    });
    // Only the file's own (syntax) diagnostics: option diagnostics belong to the whole-program check.
    const own = (out.diagnostics ?? []).filter((d) => d.file !== undefined);
    return { js: out.outputText, diagnostics: own.map((d) => toDiagnostic(d, this.root)) };
  }

  /**
   * Whether going from overlay `before` to `after` (absolute path → source, laid over the disk) may
   * change what some changed file declares to others. False only when every changed file is
   * TypeScript whose declarations TypeScript can emit without a type checker (isolated declarations:
   * every export annotated or trivially typed) and they are the same text before and after: then no
   * other file's diagnostics can change, and only the changed files need checking again.
   */
  declarationsDiffer(before: Map<string, string>, after: Map<string, string>): boolean {
    for (const file of new Set([...before.keys(), ...after.keys()])) {
      const a = before.get(file) ?? this.readDisk(file);
      const b = after.get(file) ?? this.readDisk(file);
      if (a === b) continue;
      if (a === undefined || b === undefined) return true;
      const da = this.isolatedDeclarations(file, a);
      if (da === undefined || da !== this.isolatedDeclarations(file, b)) return true;
    }
    return false;
  }

  /** The declarations `text` emits without a type checker, or undefined (not TypeScript, or they need inference or have errors). */
  private isolatedDeclarations(fileName: string, text: string): string | undefined {
    if (!/\.(ts|tsx|mts|cts)$/.test(fileName) || /\.d\.[cm]?ts$/.test(fileName)) return undefined;
    const out = ts.transpileDeclaration(text, { fileName, compilerOptions: this.checkOptions, reportDiagnostics: true });
    return (out.diagnostics ?? []).length > 0 ? undefined : out.outputText;
  }

  /** Absolute path of a module id (POSIX path relative to the root). */
  pathOf(id: string): string {
    return join(this.root, ...id.split('/'));
  }

  private isLibrary(file: string): boolean {
    return file.startsWith(this.libDir) || file.includes(`${sep}node_modules${sep}`) || file.includes('/node_modules/');
  }

  /** Disk text, re-read only when the mtime changed (lib and node_modules files: read once). */
  private readDisk(file: string): string | undefined {
    const cached = this.diskText.get(file);
    if (cached && this.isLibrary(file)) return cached.text;
    let mtimeMs = -1;
    try {
      mtimeMs = statSync(file).mtimeMs;
    } catch {
      this.diskText.set(file, { mtimeMs, text: undefined });
      return undefined;
    }
    if (cached && cached.mtimeMs === mtimeMs) return cached.text;
    const text = readFileSync(file, 'utf8');
    this.diskText.set(file, { mtimeMs, text });
    return text;
  }

  private textOf(file: string): string | undefined {
    const abs = resolve(file);
    return this.overlay.has(abs) ? this.overlay.get(abs) : this.readDisk(abs);
  }

  private createHost(): ts.CompilerHost {
    const base = ts.createCompilerHost(this.checkOptions, true);
    const host: ts.CompilerHost = {
      ...base,
      fileExists: (f) => this.overlay.has(resolve(f)) || base.fileExists(f),
      readFile: (f) => this.textOf(f),
      getSourceFile: (fileName, langVersion) => {
        const text = this.textOf(fileName);
        if (text === undefined) return undefined;
        this.onFileLoaded?.(fileName);
        const hit = this.cache.get(fileName);
        // Same text → same SourceFile object, which is what lets the builder reuse the old program.
        if (hit && hit.text === text) return hit.sf;
        const sf = ts.createSourceFile(fileName, text, langVersion, false);
        // The builder requires a version per file; a content hash makes equal texts compare equal.
        (sf as ts.SourceFile & { version?: string }).version = createHash('sha256').update(text).digest('hex');
        this.cache.set(fileName, { text, sf });
        return sf;
      },
      writeFile: () => undefined,
      // What tsc itself does: parse only the JSDoc that can produce type errors in TypeScript files
      // (all of it in JavaScript files). The rest is documentation the checker never reads, and
      // parsing it was a fifth of building the program from lib and @types files.
      jsDocParsingMode: ts.JSDocParsingMode.ParseForTypeErrors,
    };
    return host;
  }
}

function toOverlay(overlay: Map<string, string> | Record<string, string>): Map<string, string> {
  return new Map(
    overlay instanceof Map ? [...overlay].map(([k, v]) => [resolve(k), v]) : Object.entries(overlay).map(([k, v]) => [resolve(k), v]),
  );
}
