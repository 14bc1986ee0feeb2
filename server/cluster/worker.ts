/**
 * Cluster worker side: the worker runs the engine only. At start it greets the primary and holds the
 * app's HTTP requests until the primary's `sync` (the committed patch chain) has been staged and
 * committed, so its first request is served at the cluster's current generation, never the deployed
 * code. Afterwards it runs the primary's stage/commit/discard/rollback commands one at a time.
 * Its engine counts per-generation health; the primary sums the workers' counters (`health`), and a
 * HealthWindow here keeps the recent past so a watch in the primary has a baseline from every worker.
 */
import { LivepatchError, toWireError } from '../../shared/errors';
import type { Engine, Staged } from '../engine/types';
import { HealthWindow } from '../agent/health-window';
import { drain, trackServers } from './drain';
import {
  payloadOf,
  wrap,
  type ChainOp,
  type Command,
  type Request,
  type WorkerHealth,
  type WorkerMessage,
  type WorkerState,
} from './protocol';

/** How long a new worker's requests may wait for the first sync (the primary may be replaying its journal). */
const SYNC_HOLD_MS = 60_000;

/** This worker's current state, as the primary reports it; `brief` leaves out the module lists. */
export function stateOf(engine: Engine, brief = false): WorkerState {
  if (brief) return { pid: process.pid, generation: engine.currentGeneration, liveGenerations: engine.liveGenerations() };
  const ids = engine.moduleIds();
  const exports: WorkerState['exports'] = {};
  for (const id of ids) exports[id] = engine.exportsOf(id);
  return { pid: process.pid, generation: engine.currentGeneration, liveGenerations: engine.liveGenerations(), moduleIds: ids, exports };
}

/** The most generations one `health` request may name (live generations are few). */
const MAX_HEALTH_GENERATIONS = 64;

/** This worker's health counters for a `health` request (see WorkerHealth). */
export function healthReply(engine: Engine, window: HealthWindow | undefined, c: Extract<Command, { type: 'health' }>): WorkerHealth {
  const out: WorkerHealth = { generations: [] };
  if (!engine.healthOf) return out;
  const asked = Array.isArray(c.generations)
    ? new Set(c.generations.slice(0, MAX_HEALTH_GENERATIONS).filter((g) => Number.isInteger(g)))
    : undefined;
  for (const g of engine.liveGenerations()) {
    if (asked && !asked.has(g.generation)) continue;
    const h = engine.healthOf(g.generation);
    if (h) out.generations.push({ generation: g.generation, inflight: g.inflight, counts: Array.from(h) });
  }
  const b = c.baseline;
  if (window && b && Number.isInteger(b.generation) && typeof b.ms === 'number' && b.ms > 0) {
    const base = window.baselineBefore(b.generation, b.ms);
    if (base) out.baseline = Array.from(base);
  }
  return out;
}

/** Apply chain ops in order (stage + commit each patch, rollback each rollback). */
async function applyChain(engine: Engine, ops: ChainOp[]): Promise<void> {
  for (const op of ops) {
    if (op.kind === 'rollback') {
      await engine.rollback(op.to, op.meta);
      continue;
    }
    const staged = await engine.stage(op.changes, op.opts);
    try {
      engine.commit(staged, op.meta);
    } catch (err) {
      engine.discard(staged);
      throw err;
    }
  }
}

/** Start the worker side. Returns false when this process has no IPC channel (not a cluster worker). */
export function startClusterWorker(engine: Engine): boolean {
  if (typeof process.send !== 'function') return false;
  trackServers();
  const staged = new Map<string, Staged>();
  const window = engine.healthOf ? new HealthWindow(engine) : undefined;
  let firstSync: () => void = () => undefined;
  engine.holdRequests(new Promise<void>((r) => (firstSync = r)), SYNC_HOLD_MS);

  const send = (m: WorkerMessage): void => {
    try {
      process.send?.(wrap(m), undefined, undefined, () => undefined);
    } catch {
      // The channel is gone: the primary is exiting; nothing to report to.
    }
  };

  const run = async (c: Command): Promise<Staged | undefined> => {
    switch (c.type) {
      case 'sync':
        // On failure requests stay held: the primary stops a worker that cannot reach the current generation.
        await applyChain(engine, c.ops);
        firstSync();
        return undefined;
      case 'stage': {
        const s = await engine.stage(c.changes, c.opts);
        staged.set(c.tx, s);
        return s;
      }
      case 'commit': {
        const s = staged.get(c.tx);
        if (!s) throw new LivepatchError('LP_ERR_PATCH_STAGE_UNKNOWN', `no staged set for ${c.tx}`);
        staged.delete(c.tx);
        engine.commit(s, c.meta);
        return undefined;
      }
      case 'discard': {
        const s = staged.get(c.tx);
        staged.delete(c.tx);
        if (s) engine.discard(s);
        return undefined;
      }
      case 'rollback':
        await engine.rollback(c.to, c.meta);
        return undefined;
      case 'drain':
        drain(c.deadlineMs);
        return undefined;
    }
  };

  // One command at a time, in arrival order: a sync always completes before the next stage runs.
  let queue: Promise<void> = Promise.resolve();
  process.on('message', (msg: unknown) => {
    const req = payloadOf<Request>(msg);
    if (!req || typeof req.seq !== 'number' || !req.command) return;
    // Status reads no staged state: it answers at once, even while a long stage is queued.
    if (req.command.type === 'status') {
      send({ type: 'reply', seq: req.seq, ok: true, state: stateOf(engine, true) });
      return;
    }
    // So does health (counters only): a watch in the primary polls it.
    if (req.command.type === 'health') {
      try {
        send({ type: 'reply', seq: req.seq, ok: true, state: stateOf(engine, true), health: healthReply(engine, window, req.command) });
      } catch (err) {
        send({ type: 'reply', seq: req.seq, ok: false, error: toWireError(err) });
      }
      return;
    }
    queue = queue.then(async () => {
      try {
        const s = await run(req.command);
        const versions = s ? Object.fromEntries(s.changes.map((r) => [r.id, r.version])) : undefined;
        send({ type: 'reply', seq: req.seq, ok: true, state: stateOf(engine), ...(s ? { stageId: s.stageId, versions } : {}) });
      } catch (err) {
        send({ type: 'reply', seq: req.seq, ok: false, error: toWireError(err), state: stateOf(engine) });
      }
    });
  });
  send({ type: 'hello', pid: process.pid });
  return true;
}
