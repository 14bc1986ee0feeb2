/**
 * Staged patch sets waiting for commit, by stageId, each with a TTL after which it is discarded
 * (the engine drops the staged generation). Several may be held at once; committing one makes the
 * others stale, which the engine reports as a conflict when they are committed.
 */
import { LivepatchError } from '../../shared/errors';
import type { PatchSet } from '../../shared/patch';
import type { Engine, Staged } from '../engine/types';
import type { JournalFile } from './journal';

/** A staged set and what the journal needs to record it once committed. */
export interface StagedEntry {
  staged: Staged;
  patch: PatchSet;
  files: JournalFile[];
  /** Who signed the set (verified by the agent before staging), if it was signed. */
  signer?: { keyId: string; name?: string };
  /** Which side type-checked the set. */
  checkedBy?: 'host' | 'client';
  expiresAt: number;
  timer: NodeJS.Timeout;
}

/** Staged sets by stageId, each discarded by the engine when its TTL runs out. */
export class StagedStore {
  private readonly entries = new Map<string, StagedEntry>();

  constructor(private readonly engine: Engine) {}

  /** Hold `staged` for `ttlMs`; returns the expiry time. */
  add(staged: Staged, patch: PatchSet, files: JournalFile[], ttlMs: number): StagedEntry {
    const timer = setTimeout(() => this.discard(staged.stageId), ttlMs);
    // An expiring stage must not keep the host alive.
    timer.unref();
    const entry: StagedEntry = { staged, patch, files, expiresAt: Date.now() + ttlMs, timer };
    this.entries.set(staged.stageId, entry);
    return entry;
  }

  /** Remove and return the entry; throws LP_ERR_PATCH_STAGE_UNKNOWN when expired or unknown. */
  take(stageId: string): StagedEntry {
    const e = this.entries.get(stageId);
    if (!e)
      throw new LivepatchError(
        'LP_ERR_PATCH_STAGE_UNKNOWN',
        `No staged patch ${JSON.stringify(stageId).slice(0, 120)} (expired, committed or aborted)`,
      );
    this.entries.delete(stageId);
    clearTimeout(e.timer);
    return e;
  }

  /** Drop a staged set (abort or expiry). Unknown ids are ignored. */
  discard(stageId: string): boolean {
    const e = this.entries.get(stageId);
    if (!e) return false;
    this.entries.delete(stageId);
    clearTimeout(e.timer);
    try {
      this.engine.discard(e.staged);
    } catch (err) {
      process.stderr.write(`livepatch: discarding staged ${stageId} failed: ${(err as Error)?.message}\n`);
    }
    return true;
  }

  /** Whether a stageId is held. */
  has(stageId: string): boolean {
    return this.entries.has(stageId);
  }

  clear(): void {
    for (const id of [...this.entries.keys()]) this.discard(id);
  }
}
