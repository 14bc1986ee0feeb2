/**
 * Writing the build manifest (shared/manifest.ts) from a project's tsconfig: every TypeScript source
 * the tsconfig compiles (not declarations, not node_modules) with the sha256 of its text and the
 * JavaScript file tsc emits for it. Run after the build, in the tree the image is built from.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import * as ts from 'typescript';
import { LivepatchError } from '../shared/errors';
import { MANIFEST_FILE, MANIFEST_FORMAT, MAX_MANIFEST_MODULES, type BuildManifest } from '../shared/manifest';
import { loadTsconfig } from '../shared/typecheck';

export interface ManifestOutcome {
  file: string;
  manifest: BuildManifest;
  /** Modules whose compiled file is not there yet (the build did not run, or emits elsewhere). */
  notBuilt: string[];
}

const posix = (p: string): string => p.split(sep).join('/');

/** The commit `root` is checked out at, when it is a git work tree. */
function gitHead(root: string): string | undefined {
  try {
    const out = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 })
      .toString()
      .trim();
    return /^[0-9a-f]{40,64}$/.test(out) ? out : undefined;
  } catch {
    return undefined;
  }
}

/** Build the manifest of the project at `root` (tsconfig `project`, default `<root>/tsconfig.json`) and write it to `out`. */
export function writeManifest(root: string, opts: { project?: string; out?: string } = {}): ManifestOutcome {
  const abs = resolve(root);
  let parsed: ts.ParsedCommandLine;
  try {
    parsed = loadTsconfig(abs, opts.project);
  } catch (e) {
    throw new LivepatchError(
      'LP_ERR_CLI_USAGE',
      `${(e as Error).message.replace(/; patching is disabled$/, '')}: run livepatch manifest in the project root, or pass --root DIR / --project FILE`,
    );
  }
  const modules: BuildManifest['modules'] = {};
  const notBuilt: string[] = [];
  const ignoreCase = !ts.sys.useCaseSensitiveFileNames;
  for (const f of parsed.fileNames.map((x) => resolve(x)).sort()) {
    const rel = relative(abs, f);
    if (rel.startsWith('..') || rel.split(sep).includes('node_modules') || /\.d\.[cm]?ts$/.test(rel) || !/\.(ts|tsx|mts|cts)$/.test(rel))
      continue;
    const js = ts.getOutputFileNames(parsed, f, ignoreCase).find((o) => /\.[cm]?js$/.test(o));
    if (!js) continue;
    const jsRel = relative(abs, resolve(js));
    if (jsRel.startsWith('..'))
      throw new LivepatchError('LP_ERR_CLI_USAGE', `${posix(rel)} compiles to ${js}, outside the project root ${abs}`);
    const id = posix(rel);
    modules[id] = { hash: createHash('sha256').update(readFileSync(f, 'utf8')).digest('hex'), js: posix(jsRel) };
    if (!existsSync(js)) notBuilt.push(id);
  }
  if (Object.keys(modules).length > MAX_MANIFEST_MODULES)
    throw new LivepatchError('LP_ERR_CLI_USAGE', `more than ${MAX_MANIFEST_MODULES} modules`);
  const dirOf = (p: string | undefined) => (p === undefined ? undefined : posix(relative(abs, resolve(p))) || undefined);
  const rootDir = dirOf(parsed.options.rootDir);
  const outDir = dirOf(parsed.options.outDir);
  const commit = gitHead(abs);
  const manifest: BuildManifest = {
    format: MANIFEST_FORMAT,
    createdAt: new Date().toISOString(),
    ...(commit ? { commit } : {}),
    ...(rootDir && !rootDir.startsWith('..') ? { rootDir } : {}),
    ...(outDir && !outDir.startsWith('..') ? { outDir } : {}),
    modules,
  };
  const file = resolve(opts.out ?? resolve(abs, MANIFEST_FILE));
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify(manifest, null, 2) + '\n');
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // Nothing was written.
    }
    throw new LivepatchError(
      'LP_ERR_CLI_USAGE',
      `cannot write ${file} (in ${dirname(file)}): ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    );
  }
  return { file, manifest, notBuilt };
}
