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
  }
}

/** `g3*(2) g2(1)`: live generations, current starred, in-flight counts in brackets. */
export function liveGenerations(live: LiveGeneration[]): string {
  return live
    .slice()
    .sort((a, b) => b.generation - a.generation)
    .map((g) => `g${g.generation}${g.current ? '*' : ''}(${g.inflight})`)
    .join(' ');
}
