/**
 * The primary's model of the cluster's live program: which version of each module every generation
 * holds, numbered exactly as each worker's engine numbers them (every worker starts at generation 1
 * and applies the same chain of patches and rollbacks). Deployed versions are read from the sources
 * on disk — the same files, hashed the same way, as the workers' engines — so the pipeline can check
 * bases and build its overlay before any worker exists (journal replay at start).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LivepatchError } from '../../shared/errors';
import type { CommitResult } from '../../shared/ops';
import type { GenerationSummary, ModuleVersionInfo } from '../../shared/patch';
import type { CommitMeta, StageChange, VersionRecord } from '../engine/types';
import { sha256 } from '../../shared/hash';

type Summary = Omit<GenerationSummary, 'live' | 'current' | 'inflight'>;

interface Gen {
  n: number;
  /** Versions that differ from the deployed files (patched modules and new modules). */
  overrides: Map<string, VersionRecord>;
  summary: Summary;
}

/** See the file header. */
export class ClusterModel {
  private readonly gens: Gen[] = [];
  /** Every version each module had through a patch (a source seen again is that version again). */
  private readonly records = new Map<string, VersionRecord[]>();
  private readonly deployedCache = new Map<string, VersionRecord | null>();
  /** Module ids the workers reported live (deployed modules loaded by the app). */
  readonly knownIds = new Set<string>();

  constructor(readonly root: string) {
    this.gens.push({ n: 1, overrides: new Map(), summary: { generation: 1, kind: 'deploy', time: new Date().toISOString(), changed: [] } });
  }

  get current(): number {
    return this.gens.length;
  }

  moduleIds(): string[] {
    const ids = new Set(this.knownIds);
    for (const id of this.gens[this.gens.length - 1]!.overrides.keys()) ids.add(id);
    return [...ids].sort();
  }

  /** The version of `id` at `generation` (default current); deployed versions come from disk. */
  getVersion(id: string, generation?: number): VersionRecord | undefined {
    const g = this.gens[(generation ?? this.current) - 1];
    if (!g) return undefined;
    return g.overrides.get(id) ?? this.deployed(id);
  }

  listVersions(generation?: number): ModuleVersionInfo[] {
    const g = this.gens[(generation ?? this.current) - 1];
    if (!g) return [];
    const ids = new Set([...this.knownIds, ...g.overrides.keys()]);
    const rows: ModuleVersionInfo[] = [];
    for (const id of [...ids].sort()) {
      const r = this.getVersion(id, g.n);
      if (r)
        rows.push({ module: id, version: r.version, generation: r.generation, hash: r.hash, patched: r.version > 1 || r.generation > 1 });
    }
    return rows;
  }

  summaries(): Summary[] {
    return this.gens.map((g) => ({ ...g.summary, changed: [...g.summary.changed] }));
  }

  /**
   * The records a patch would create on top of the current generation (nothing changes yet). `seen`
   * are the version numbers a worker's engine gave them (it knows when a patch is byte-for-byte the
   * deployed JS again); without a worker, a source the module already had is that version again.
   */
  plan(changes: StageChange[], seen?: Record<string, number>): VersionRecord[] {
    const generation = this.current + 1;
    return changes.map((c) => {
      const had = [this.deployed(c.id), ...(this.records.get(c.id) ?? [])].filter((r): r is VersionRecord => r !== undefined);
      const want = seen?.[c.id];
      const reuse = want !== undefined ? had.find((r) => r.version === want) : had.find((r) => r.source === c.source);
      if (reuse) return reuse;
      const version = want ?? Math.max(0, ...had.map((r) => r.version)) + 1;
      const file = join(this.root, ...c.id.split('/'));
      return {
        id: c.id,
        version,
        generation,
        hash: sha256(c.source),
        source: c.source,
        sourceFile: file,
        runtimeFile: file.replace(/\.ts$/, '.js'),
      };
    });
  }

  /** Record a committed patch whose records came from `plan` on the current generation. */
  commitPatch(records: readonly VersionRecord[], meta: CommitMeta): CommitResult {
    const prev = this.gens[this.gens.length - 1]!;
    const overrides = new Map(prev.overrides);
    for (const r of records) {
      overrides.set(r.id, r);
      const list = this.records.get(r.id) ?? [];
      if (!list.includes(r) && r !== this.deployed(r.id)) this.records.set(r.id, [...list, r]);
    }
    const n = prev.n + 1;
    this.gens.push({
      n,
      overrides,
      summary: { generation: n, kind: 'patch', time: new Date().toISOString(), ...metaOf(meta), changed: records.map((r) => r.id).sort() },
    });
    return {
      generation: n,
      previousGeneration: prev.n,
      changed: records.map((r) => ({ module: r.id, version: r.version, hash: r.hash })),
      ...(meta.patchId !== undefined ? { patchId: meta.patchId } : {}),
    };
  }

  /** The rollback target for `to` (default: the previous generation); throws like the engine does. */
  rollbackTarget(to?: number): number {
    const target = to ?? this.current - 1;
    if (!Number.isInteger(target) || target < 1 || target >= this.current) {
      throw new LivepatchError('LP_ERR_ROLLBACK_TARGET', `no generation ${String(target)} to roll back to (current is ${this.current})`, {
        to: target,
      });
    }
    return target;
  }

  /** Record a rollback to `target` as a new generation (the engine's rule: target's versions, later new modules stay). */
  commitRollback(target: number, meta: CommitMeta): CommitResult {
    const prev = this.gens[this.gens.length - 1]!;
    const targetGen = this.gens[target - 1]!;
    const overrides = new Map(prev.overrides);
    const changed: VersionRecord[] = [];
    for (const id of new Set([...prev.overrides.keys(), ...targetGen.overrides.keys()])) {
      const back = targetGen.overrides.get(id) ?? this.deployed(id);
      if (!back) continue;
      if (targetGen.overrides.has(id)) overrides.set(id, back);
      else overrides.delete(id);
      if (prev.overrides.get(id) !== back) changed.push(back);
    }
    const n = prev.n + 1;
    this.gens.push({
      n,
      overrides,
      summary: {
        generation: n,
        kind: 'rollback',
        time: new Date().toISOString(),
        ...metaOf(meta),
        changed: changed.map((r) => r.id).sort(),
        rollbackTo: target,
      },
    });
    return { generation: n, previousGeneration: prev.n, changed: changed.map((r) => ({ module: r.id, version: r.version, hash: r.hash })) };
  }

  private deployed(id: string): VersionRecord | undefined {
    let r = this.deployedCache.get(id);
    if (r === undefined) {
      const file = join(this.root, ...id.split('/'));
      let source: string | undefined;
      try {
        source = readFileSync(file, 'utf8');
      } catch {
        source = undefined;
      }
      r = source === undefined ? null : { id, version: 1, generation: 1, hash: sha256(source), source, sourceFile: file, runtimeFile: '' };
      // Only cache hits: a file that appears later (a new module committed) must be seen.
      if (r) this.deployedCache.set(id, r);
    }
    return r ?? undefined;
  }
}

function metaOf(meta: CommitMeta): Partial<Summary> {
  const out: Partial<Summary> = {};
  if (meta.who !== undefined) out.who = meta.who;
  if (meta.message !== undefined) out.message = meta.message;
  if (meta.patchId !== undefined) out.patchId = meta.patchId;
  if (meta.signer !== undefined) out.signer = { ...meta.signer };
  if (meta.checkedBy !== undefined) out.checkedBy = meta.checkedBy;
  return out;
}
