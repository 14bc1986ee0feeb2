/**
 * Which files are live modules and what their ids are.
 *
 * A live module's id is the POSIX path of its TypeScript source relative to the project root. `.ts`
 * files (ts-node) map to themselves; compiled `.js` files map back through the tsconfig's
 * rootDir/outDir, else through a `//# sourceMappingURL` map's first source, else to the `.js` path.
 * The tsconfig is read as JSON with comments stripped so the host never loads `typescript` for this.
 * A build manifest (shared/manifest.ts) in the root comes first: its compiled files map to its ids, and
 * its rootDir/outDir stand in for a tsconfig that is not deployed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { isEsModuleFile } from '../../shared/module-format';
import { compiledIndex, readManifest, type BuildManifest } from '../../shared/manifest';

/** Where a live module's TypeScript source is, and its id. */
export interface ModuleLocation {
  id: string;
  sourceFile: string;
}

/** Strip // and block comments and trailing commas from tsconfig-style JSON (strings kept intact). */
export function parseJsonc(text: string): unknown {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      out += text.slice(start, i + 1);
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
      out += '\n';
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 1;
    } else out += c;
  }
  return JSON.parse(out.replace(/,(\s*[}\]])/g, '$1'));
}

function readCompilerOptions(file: string, depth = 0): { rootDir?: string; outDir?: string } {
  if (depth > 4 || !existsSync(file)) return {};
  try {
    const cfg = (parseJsonc(readFileSync(file, 'utf8')) ?? {}) as {
      compilerOptions?: { rootDir?: unknown; outDir?: unknown };
      extends?: unknown;
    };
    const dir = dirname(file);
    const own = cfg.compilerOptions ?? {};
    const inherited =
      typeof cfg.extends === 'string' && cfg.extends.startsWith('.')
        ? readCompilerOptions(resolve(dir, cfg.extends.endsWith('.json') ? cfg.extends : `${cfg.extends}.json`), depth + 1)
        : {};
    return {
      rootDir: typeof own.rootDir === 'string' ? resolve(dir, own.rootDir) : inherited.rootDir,
      outDir: typeof own.outDir === 'string' ? resolve(dir, own.outDir) : inherited.outDir,
    };
  } catch {
    return {};
  }
}

const toPosix = (p: string): string => p.split(sep).join('/');

/** Maps runtime files to module ids (and back) for one project root. */
export class ModuleMapper {
  readonly root: string;
  private readonly rootDir: string | undefined;
  private readonly outDir: string | undefined;
  /** This package's compiled tree (dist/): never live, even when the app lives inside the repository. */
  private readonly ownDist = resolve(__dirname, '..', '..');
  /** Set once a `.ts` module was loaded directly (ts-node): new modules then run from their source path. */
  tsRuntime = false;
  /** The build manifest in the root, if there is a valid one. */
  readonly manifest: BuildManifest | undefined;
  /** Compiled file (absolute) → module id, from the manifest. */
  private readonly compiled: Map<string, string>;

  constructor(root: string, opts: { warn?: (message: string) => void } = {}) {
    this.root = resolve(root);
    const o = readCompilerOptions(join(this.root, 'tsconfig.json'));
    this.manifest = readManifest(this.root, opts.warn);
    const m = this.manifest;
    const under = (p: string | undefined) => (p === undefined ? undefined : join(this.root, ...p.split('/')));
    this.rootDir = o.rootDir ?? under(m?.rootDir);
    this.outDir = o.outDir ?? under(m?.outDir);
    this.compiled = new Map(m ? [...compiledIndex(m)].map(([js, id]) => [join(this.root, ...js.split('/')), id]) : []);
  }

  /** The source hash the build manifest records for `id` (undefined without a manifest entry). */
  manifestHash(id: string): string | undefined {
    return this.manifest && Object.prototype.hasOwnProperty.call(this.manifest.modules, id) ? this.manifest.modules[id]!.hash : undefined;
  }

  /** Whether `filename` is an app module under the root (not node_modules, not livepatch itself). */
  inScope(filename: string): boolean {
    if (!filename.startsWith(this.root + sep)) return false;
    if (filename.includes(`${sep}node_modules${sep}`)) return false;
    if (filename.startsWith(this.ownDist + sep) && !this.root.startsWith(this.ownDist + sep)) return false;
    return /\.([cm]?js|tsx?|[cm]ts)$/.test(filename) && !/\.d\.[cm]?ts$/.test(filename);
  }

  private located(sourceFile: string): ModuleLocation {
    return { id: toPosix(relative(this.root, sourceFile)), sourceFile };
  }

  /** The id and TS source path of a runtime file, given its (compiled) content. */
  locate(filename: string, content: string): ModuleLocation {
    if (/\.(tsx?|[cm]ts)$/.test(filename)) {
      this.tsRuntime = true;
      return this.located(filename);
    }
    const listed = this.compiled.get(filename);
    if (listed !== undefined) return this.located(this.sourceFileOf(listed));
    if (this.outDir && filename.startsWith(this.outDir + sep)) {
      const rel = relative(this.outDir, filename).replace(/\.[cm]?js$/, '');
      const dirs = this.rootDir ? [this.rootDir] : [this.root, join(this.root, 'src')];
      for (const d of dirs)
        for (const ext of ['.ts', '.tsx', '.cts', '.mts']) if (existsSync(join(d, rel + ext))) return this.located(join(d, rel + ext));
      if (this.rootDir) return this.located(join(this.rootDir, `${rel}.ts`));
    }
    const fromMap = this.fromSourceMap(filename, content);
    if (fromMap) return this.located(fromMap);
    return this.located(filename);
  }

  private fromSourceMap(filename: string, content: string): string | undefined {
    const m = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(content.slice(-4096));
    if (!m) return undefined;
    try {
      let map: { sources?: unknown; sourceRoot?: unknown };
      let base = dirname(filename);
      const url = m[1]!;
      const inline = /^data:application\/json[^,]*;base64,(.*)$/.exec(url);
      if (inline) map = JSON.parse(Buffer.from(inline[1]!, 'base64').toString('utf8')) as typeof map;
      else {
        const file = resolve(base, decodeURIComponent(url));
        map = JSON.parse(readFileSync(file, 'utf8')) as typeof map;
        base = dirname(file);
      }
      const src: unknown = Array.isArray(map.sources) ? map.sources[0] : undefined;
      if (typeof src !== 'string' || !/\.(tsx?|[cm]ts)$/.test(src)) return undefined;
      const abs = isAbsolute(src) ? src : resolve(base, typeof map.sourceRoot === 'string' ? map.sourceRoot : '', src);
      return abs.startsWith(this.root + sep) ? abs : undefined;
    } catch {
      return undefined;
    }
  }

  /** Whether Node loads `file` as an ES module. */
  isEsModule(file: string): boolean {
    return isEsModuleFile(file);
  }

  /** Absolute source path of an id. */
  sourceFileOf(id: string): string {
    return join(this.root, ...id.split('/'));
  }

  /** Where the runtime JS of a (new) module id would live. */
  runtimeFileOf(id: string): string {
    const src = this.sourceFileOf(id);
    // tsc's output names: .ts/.tsx → .js, .cts → .cjs, .mts → .mjs.
    const js = (p: string): string => p.replace(/\.(tsx?|([cm])ts)$/, (_m, _e, cm: string | undefined) => `.${cm ?? ''}js`);
    if (this.tsRuntime || !this.outDir) return this.tsRuntime ? src : js(src);
    const base = this.rootDir ?? this.root;
    if (!src.startsWith(base + sep)) return js(src);
    return js(join(this.outDir, relative(base, src)));
  }
}
