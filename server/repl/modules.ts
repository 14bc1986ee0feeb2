/**
 * Live modules as the REPL sees them: by module id (`src/rates.ts`), typed through a generated prelude
 * (`mod(id)` and relative imports resolve to the live sources under the root, patched modules to
 * their current source), and at runtime through the engine's facades (the require cache), so calls go
 * through the same trampolines as the app's own calls.
 */
import { posix, relative, isAbsolute, join } from 'node:path';
import type { Engine } from '../engine/types';

/** Name of the virtual declaration file that types `mod(id)`. */
export const PRELUDE_NAME = '__livepatch_repl_prelude.d.ts';

const TS_EXT = /\.(ts|tsx|mts|cts)$/;

/** Module access for one engine/root. */
export class LiveModules {
  readonly engine: Engine;
  readonly root: string;

  constructor(engine: Engine, root: string) {
    this.engine = engine;
    this.root = root;
  }

  /** The live module id a specifier names (`src/rates.ts`, `src/rates`, `./src/rates`, an absolute path), if any. */
  resolveId(spec: string): string | undefined {
    let s = spec;
    if (isAbsolute(s)) s = relative(this.root, s).split('\\').join('/');
    s = posix.normalize(s).replace(/^\.\//, '');
    const ids = this.engine.moduleIds();
    if (ids.includes(s)) return s;
    const bare = (id: string) => id.replace(/\.[cm]?[jt]sx?$/, '');
    return ids.find((id) => bare(id) === s || bare(id) === `${s}/index` || bare(id) === bare(s));
  }

  /** The live exports of `id`, loading the module if the app has not yet (may have side effects). */
  load(id: string): unknown {
    const v = this.engine.getVersion(id);
    if (!v) throw new Error(`not a live module: ${id}`);
    // The engine's loader hooks hand back the module's facade for files under the root.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- an app file chosen at run time
    return require(v.runtimeFile);
  }

  /** The live exports of `id` if the app already loaded it; never loads anything (side-effect-free). */
  cached(id: string): unknown {
    const v = this.engine.getVersion(id);
    return v ? require.cache[v.runtimeFile]?.exports : undefined;
  }

  /**
   * A snapshot id → exports of every loaded live module at `generation`, for the side-effect-free
   * evaluator: the version's own exports when the engine offers them (no facade lookup at call
   * time), else the facade.
   */
  snapshot(generation?: number): Record<string, unknown> {
    const out = Object.create(null) as Record<string, unknown>;
    const own = this.engine.exportsAt?.bind(this.engine);
    for (const id of this.engine.moduleIds()) {
      const e = (own ? own(id, generation) : undefined) ?? this.cached(id);
      if (e !== undefined) out[id] = e;
    }
    return out;
  }

  /** Ambient declarations typing `mod(id)` against each live module's source. */
  prelude(): string {
    const lines = ['interface LivepatchModules {'];
    for (const id of this.engine.moduleIds()) {
      const type = TS_EXT.test(id) && !id.endsWith('.d.ts') ? `typeof import(${JSON.stringify('./' + id.replace(TS_EXT, ''))})` : 'any';
      lines.push(`  ${JSON.stringify(id)}: ${type};`);
    }
    lines.push('}');
    lines.push('/** The live exports of a module, by module id (path of its source relative to the project root). */');
    lines.push('declare function mod<K extends keyof LivepatchModules>(id: K): LivepatchModules[K];');
    return lines.join('\n') + '\n';
  }

  /** In-memory sources of modules patched as of `generation` (default current), keyed by absolute path. */
  overlays(generation?: number): Record<string, { text: string; version: string }> {
    const out: Record<string, { text: string; version: string }> = {};
    for (const row of this.engine.listVersions(generation)) {
      if (!row.patched) continue;
      const v = this.engine.getVersion(row.module, generation);
      if (!v || !v.source) continue;
      out[v.sourceFile || join(this.root, v.id)] = { text: v.source, version: v.hash };
    }
    return out;
  }
}
