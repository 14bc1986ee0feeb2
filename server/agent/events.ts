/**
 * Engine events → `event` messages to subscribed connections (committed, drained, released).
 * Returns a function that detaches the listeners when the agent stops.
 */
import type { GenerationSummary } from '../../shared/patch';
import type { AgentEvent } from '../../shared/messages';
import type { AgentContext } from './context';

/** Send `event` to every subscribed connection. */
export function broadcast(ctx: AgentContext, event: AgentEvent): void {
  for (const s of ctx.sessions) {
    try {
      s.event(event);
    } catch {
      /* ClientConnection.send contains its own failures */
    }
  }
}

/** Subscribe to the engine's events on behalf of all connections. */
export function forwardEngineEvents(ctx: AgentContext): () => void {
  const { engine } = ctx;
  let previous = engine.currentGeneration;
  const onCommit = (g: GenerationSummary) => {
    const meta = ctx.commits.get(g.generation);
    const who = g.who ?? meta?.who ?? '-';
    const message = g.message ?? meta?.message;
    broadcast(ctx, {
      event: 'committed',
      generation: g.generation,
      previousGeneration: previous,
      kind: g.kind === 'rollback' ? 'rollback' : 'patch',
      who,
      ...(message ? { message } : {}),
      changed: g.changed,
      time: g.time ?? new Date().toISOString(),
    });
    previous = g.generation;
  };
  const onDrained = (generation: number) => broadcast(ctx, { event: 'drained', generation, time: new Date().toISOString() });
  const onReleased = (generation: number) => broadcast(ctx, { event: 'released', generation, time: new Date().toISOString() });
  engine.on('commit', onCommit);
  engine.on('drained', onDrained);
  engine.on('released', onReleased);
  return () => {
    engine.off('commit', onCommit);
    engine.off('drained', onDrained);
    engine.off('released', onReleased);
  };
}
