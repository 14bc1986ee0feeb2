/**
 * The current generation's health over the recent past, so a watch can compare a new generation with
 * the previous one over the same length of time before the commit.
 *
 * Every SAMPLE_MS an unref'd timer copies the current generation's cumulative counters into a ring
 * of fixed size (enough for the longest watch); the engine's 'commit' event adds one more copy of the
 * generation that was current, taken at the commit itself. Copies are Uint32Array: differences of
 * counters modulo 2^32 are exact for any window that counts fewer than 4 billion events. Memory is
 * bounded (RING slots of ~0.4 KB, filled as time passes); nothing runs on the request path.
 */
import { H_SIZE } from '../engine/health';
import type { Engine } from '../engine/types';
import type { GenerationSummary } from '../../shared/patch';
import { WATCH_MAX_MS } from '../../shared/health';

export const SAMPLE_MS = 2000;
const RING = Math.ceil(WATCH_MAX_MS / SAMPLE_MS) + 2;

interface Sample {
  generation: number;
  at: number;
  counts: Uint32Array;
}

export class HealthWindow {
  private readonly ring: (Sample | undefined)[] = Array.from({ length: RING }, () => undefined);
  private next = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly onCommit: (g: GenerationSummary) => void;
  /** The previous generation's counters at the latest commit. */
  private atCommit: Sample | undefined;
  private current: number;

  constructor(private readonly engine: Engine) {
    this.current = engine.currentGeneration;
    this.timer = setInterval(() => this.sample(this.current, Date.now(), false), SAMPLE_MS);
    this.timer.unref();
    this.onCommit = (g) => {
      // Synchronous inside the commit: the generation it replaced has not been released yet.
      const prev = this.current;
      this.current = g.generation;
      this.atCommit = this.sample(prev, Date.now(), true);
    };
    engine.on('commit', this.onCommit);
    this.sample(this.current, Date.now(), false);
  }

  private sample(generation: number, at: number, commit: boolean): Sample | undefined {
    try {
      const h = this.engine.healthOf?.(generation);
      if (!h) return undefined;
      const slot = commit ? undefined : this.ring[this.next];
      const s: Sample = slot ?? { generation, at, counts: new Uint32Array(H_SIZE) };
      s.generation = generation;
      s.at = at;
      for (let i = 0; i < H_SIZE; i++) s.counts[i] = h[i]! >>> 0;
      if (!commit) {
        this.ring[this.next] = s;
        this.next = (this.next + 1) % RING;
      }
      return s;
    } catch {
      return undefined;
    }
  }

  /**
   * `generation`'s figures over the `ms` before its replacement was committed: the counters at the
   * commit minus the oldest sample of the same generation inside the window (since it became live
   * when that was inside the window). Undefined when the commit of `generation`'s successor was not seen.
   */
  baselineBefore(generation: number, ms: number): Float64Array | undefined {
    const end = this.atCommit;
    if (!end || end.generation !== generation) return undefined;
    let start: Sample | undefined;
    let began = false;
    for (const s of this.ring) {
      if (!s || s.at < end.at - ms || s.at > end.at) continue;
      // A sample of an earlier generation inside the window: this one became current within it.
      if (s.generation < generation) began = true;
      else if (s.generation === generation && (!start || s.at < start.at)) start = s;
    }
    if (began) start = undefined;
    const out = new Float64Array(H_SIZE);
    for (let i = 0; i < H_SIZE; i++) out[i] = (end.counts[i]! - (start ? start.counts[i]! : 0)) >>> 0;
    return out;
  }

  stop(): void {
    clearInterval(this.timer);
    this.engine.off('commit', this.onCommit);
  }
}
