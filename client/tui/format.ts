/**
 * Plain-text formatting shared by the views and the reducer: event lines, times, live generations
 * (the History tab uses client/format.ts, the same tables as the CLI).
 * No tags here, so the same strings work in the event log, popups and tests.
 */
import type { AgentEvent, LiveGeneration } from '../../shared';

/** `2026-11-27T01:02:03.456Z` → `01:02:03` (UTC, so every operator sees the same clock). */
export function clock(iso: string): string {
  const m = /T(\d\d:\d\d:\d\d)/.exec(iso);
  return m ? m[1]! : iso;
}

/** One event-log line for an agent event. */
export function eventLine(e: AgentEvent): string {
  switch (e.event) {
    case 'committed': {
      const what = `${e.kind} → gen ${e.generation}`;
      const mods = e.changed.length ? ` [${e.changed.join(', ')}]` : '';
      return `${clock(e.time)} ${what} by ${e.who}${e.message ? `: ${e.message}` : ''}${mods}`;
    }
    case 'drained':
      return `${clock(e.time)} gen ${e.generation} drained`;
    case 'released':
      return `${clock(e.time)} gen ${e.generation} released`;
    case 'worker':
      return `${clock(e.time)} worker ${e.pid} ${e.state}${e.generation !== undefined ? ` (gen ${e.generation})` : ''}`;
    case 'watch':
      if (e.verdict === 'started') return `${clock(e.time)} watching gen ${e.generation} against gen ${e.previousGeneration}`;
      return `${clock(e.time)} watch of gen ${e.generation}: ${e.verdict}${e.revertGeneration !== undefined ? ` → gen ${e.revertGeneration}` : ''}${e.reason ? `: ${e.reason}` : ''}`;
  }
}

/**
 * `g3*(2; 1520 req, 0.13% err, p99 4.8ms) g2(1; …)`: live generations, current starred, in-flight
 * counts and, where the agent counts them, health figures in brackets.
 */
export function liveGenerations(live: LiveGeneration[]): string {
  return live
    .slice()
    .sort((a, b) => b.generation - a.generation)
    .map((g) => {
      const h = g.health;
      const health = h
        ? `; ${h.requests} req, ${(h.errorRate * 100).toFixed(2)}% err${h.uncaught + h.rejections ? `, ${h.uncaught + h.rejections} uncaught` : ''}${h.p99Ms !== undefined ? `, p99 ${h.p99Ms}ms` : ''}`
        : '';
      return `g${g.generation}${g.current ? '*' : ''}(${g.inflight}${health})`;
    })
    .join(' ');
}
