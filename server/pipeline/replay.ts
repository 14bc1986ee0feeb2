/**
 * Journal replay at start: re-applies the journaled patch sets and rollbacks in order, before the
 * app serves (the pipeline holds requests on the returned promise). The type check is skipped (each
 * set was checked when committed) and the journaled JS is loaded as is, but bases are checked: a
 * record whose base no longer matches the live source (the app was redeployed) is not applied and
 * becomes drift. Patch records in `quarantined` (crash-loop protection) are not applied; quarantine
 * and drop records change nothing live. Nothing here may throw into the host: failures are reported
 * and skipped.
 */
import { LivepatchError } from '../../shared/errors';
import type { DriftEntry } from '../../shared/ops';
import type { Engine } from '../engine/types';
import type { JournalRecord, PatchRecord, RollbackRecord } from './journal';

/** What replay did: counts, drift, and the bookkeeping the pipeline continues from. */
export interface ReplayOutcome {
  applied: number;
  skipped: number;
  drift: DriftEntry[];
  /** Patch ids whose sets are live again (for duplicate detection). */
  patchIds: string[];
  /** Live generation → journal seq that produced it (0 = deployed), for journaling later rollbacks. */
  seqOfGeneration: Map<number, number>;
}

/** Replay settings; `log` defaults to stderr. */
export interface ReplayOptions {
  /**
   * Whether module `id` is an ES module. ES modules load asynchronously after the preload: replay
   * first waits (up to `esmWaitMs`) until the ES modules the records name are live.
   */
  isEsm?: (id: string) => boolean;
  esmWaitMs?: number;
  loadTimeoutMs?: number;
  /** seqs of quarantined patch records: not applied. */
  quarantined?: ReadonlySet<number>;
  log?: (line: string) => void;
}

/** Replay `records` onto `engine`. Never rejects. */
export async function replayJournal(engine: Engine, records: JournalRecord[], opts: ReplayOptions = {}): Promise<ReplayOutcome> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`livepatch: ${l}\n`));
  const out: ReplayOutcome = { applied: 0, skipped: 0, drift: [], patchIds: [], seqOfGeneration: new Map([[engine.currentGeneration, 0]]) };
  const genOfSeq = new Map<number, number>([[0, engine.currentGeneration]]);
  const esm = new Set(records.flatMap((r) => (r.kind === 'patch' ? r.files.map((f) => f.module) : [])).filter((id) => opts.isEsm?.(id)));
  if (esm.size > 0) await untilLive(engine, esm, opts.esmWaitMs ?? 5000);
  for (const rec of records) {
    if (rec.kind !== 'patch' && rec.kind !== 'rollback') continue;
    if (rec.kind === 'patch' && opts.quarantined?.has(rec.seq)) {
      out.skipped++;
      log(
        `journal replay: record #${rec.seq}${rec.patchId ? ` (${rec.patchId})` : ''} not applied: quarantined (livepatch quarantine HOST --reapply or --drop)`,
      );
      continue;
    }
    try {
      const generation =
        rec.kind === 'patch' ? await replayPatch(engine, rec, out, opts.loadTimeoutMs) : await replayRollback(engine, rec, genOfSeq, log);
      if (generation === undefined) {
        out.skipped++;
        continue;
      }
      genOfSeq.set(rec.seq, generation);
      out.seqOfGeneration.set(generation, rec.seq);
      out.applied++;
    } catch (err) {
      out.skipped++;
      const code = err instanceof LivepatchError ? err.code : 'LP_ERR_INTERNAL';
      log(
        `journal replay: record #${rec.seq} (${rec.kind}${rec.kind === 'patch' && rec.patchId ? ` ${rec.patchId}` : ''}) not applied: ${code} ${(err as Error)?.message ?? ''}`,
      );
    }
  }
  if (records.some((r) => r.kind === 'patch' || r.kind === 'rollback'))
    log(`journal replay: ${out.applied} applied, ${out.skipped} skipped, ${out.drift.length} drifted module(s)`);
  return out;
}

/** Resolve once every module in `ids` is live (or loaded but not live), or after `ms`. */
async function untilLive(engine: Engine, ids: ReadonlySet<string>, ms: number): Promise<void> {
  const until = Date.now() + ms;
  const loaded = (): boolean => {
    const known = new Set([...engine.moduleIds(), ...(engine.notLiveModules?.() ?? []).map((n) => n.module)]);
    return [...ids].every((id) => known.has(id));
  };
  while (!loaded() && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
}

async function replayPatch(
  engine: Engine,
  rec: PatchRecord,
  out: ReplayOutcome,
  loadTimeoutMs: number | undefined,
): Promise<number | undefined> {
  const drifted: DriftEntry[] = [];
  for (const f of rec.files) {
    const actual = engine.getVersion(f.module)?.hash ?? null;
    if (actual !== f.base) {
      drifted.push({
        module: f.module,
        patchId: rec.patchId ?? `#${rec.seq}`,
        generation: rec.generation,
        expectedHash: f.base ?? '',
        actualHash: actual ?? '',
      });
    }
  }
  if (drifted.length > 0) {
    out.drift.push(...drifted);
    return undefined;
  }
  const staged = await engine.stage(
    rec.files.map((f) => ({ id: f.module, source: f.source, js: f.js })),
    { loadTimeoutMs },
  );
  try {
    const res = engine.commit(staged, {
      who: 'journal-replay',
      message: rec.message,
      patchId: rec.patchId,
      ...(rec.signer ? { signer: rec.signer } : {}),
    });
    if (rec.patchId) out.patchIds.push(rec.patchId);
    return res.generation;
  } catch (err) {
    engine.discard(staged);
    throw err;
  }
}

async function replayRollback(
  engine: Engine,
  rec: RollbackRecord,
  genOfSeq: Map<number, number>,
  log: (l: string) => void,
): Promise<number | undefined> {
  const target = genOfSeq.get(rec.toSeq);
  if (target === undefined) {
    log(`journal replay: rollback #${rec.seq} skipped: its target (record #${rec.toSeq}) was not re-applied`);
    return undefined;
  }
  const res = await engine.rollback(target, { who: 'journal-replay', message: `replayed rollback to generation ${rec.to}` });
  return res.generation;
}
