/**
 * Test-only preload that drives the patch pipeline inside a real app process over IPC, so pipeline
 * tests need no agent or tokens: `node -r livepatch/register -r <this> dist/main.js`, spawned with an
 * IPC channel. Options come from LP_PIPELINE_OPTS (JSON: journalDir, replay, loadTimeoutMs, ...).
 * Each message `{ id, op, args }` gets `{ id, ok, result }` or `{ id, ok: false, error }` (wire
 * form), and progress events as `{ id, progress }`. `eld-start` / `eld-stop` measure the event loop's
 * max delay (perf_hooks) around an operation, for the benchmark.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { toWireError } from '../../shared/errors';
import type { Engine } from '../../server/engine/types';
import { createPipeline, type ReadyPipeline } from '../../server/pipeline';
import type { OpContext } from '../../server/pipeline/types';

const { getEngine } = require('../../server/engine') as { getEngine: () => Engine | undefined };
const engine = getEngine();
if (!engine) throw new Error('pipeline-driver: the engine is not installed (preload livepatch/register first)');
const opts = JSON.parse(process.env.LP_PIPELINE_OPTS ?? '{}') as Record<string, unknown>;
const pipeline: ReadyPipeline = createPipeline({
  ...opts,
  engine,
  root: typeof opts.root === 'string' ? opts.root : (process.env.LIVEPATCH_ROOT ?? process.cwd()),
});
let eld: IntervalHistogram | undefined;

interface Msg {
  id: number;
  op: string;
  args?: any;
}

async function run(m: Msg): Promise<unknown> {
  const ctx: OpContext = { who: 'test', onProgress: (progress) => process.send?.({ id: m.id, progress }) };
  const a = m.args ?? {};
  switch (m.op) {
    case 'ready':
      return pipeline.ready.then(() => true);
    case 'patching':
      return pipeline.patching;
    case 'check':
      return pipeline.check(a.patch, ctx);
    case 'stage':
      return pipeline.stage(a.patch, ctx, a.ttlMs);
    case 'commit':
      return pipeline.commit(a.stageId, ctx);
    case 'abort':
      pipeline.abort(a.stageId, ctx);
      return { aborted: true };
    case 'apply':
      return pipeline.apply(a.patch, ctx, a.dryRun);
    case 'apply-both': {
      // Two applies started in the same turn (two IPC messages may arrive turns apart on a busy machine).
      const outcomes = await Promise.allSettled([pipeline.apply(a.first, ctx), pipeline.apply(a.second, ctx)]);
      return outcomes.map((o) => (o.status === 'fulfilled' ? { ok: true } : { ok: false, error: toWireError(o.reason) }));
    }
    case 'rollback':
      return pipeline.rollback(a.to, ctx);
    case 'drift':
      return pipeline.drift();
    case 'generation':
      return engine!.currentGeneration;
    case 'version':
      return engine!.getVersion(a.id) ?? null;
    case 'eld-start':
      eld = monitorEventLoopDelay({ resolution: 5 });
      eld.enable();
      return true;
    case 'eld-stop': {
      eld?.disable();
      const maxMs = eld ? eld.max / 1e6 : 0;
      const p99Ms = eld ? eld.percentile(99) / 1e6 : 0;
      eld = undefined;
      return { maxMs, p99Ms };
    }
    default:
      throw new Error(`unknown driver op ${m.op}`);
  }
}

process.on('message', (m: Msg) => {
  run(m).then(
    (result) => process.send?.({ id: m.id, ok: true, result }),
    (err) => process.send?.({ id: m.id, ok: false, error: toWireError(err) }),
  );
});
// The IPC channel must not keep the app alive after the test is done with it.
process.channel?.unref();
