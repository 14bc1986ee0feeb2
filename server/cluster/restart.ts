/**
 * Rolling restart, run by the primary: its workers are replaced one at a time. For each: fork a new
 * worker, wait until it listens and has reached the cluster's current generation (it holds requests
 * until then), then stop the old one gracefully — it is told to drain (responses end their keep-alive
 * connections) and disconnected (it stops accepting; the app's exit handler sees
 * `exitedAfterDisconnect` and must not re-fork it), and it is killed if still alive at the deadline.
 */
import cluster, { type Worker } from 'node:cluster';
import { LivepatchError } from '../../shared/errors';
import type { RestartResult } from '../../shared/ops';
import type { Member, Members } from './members';

/** What the restart needs from the ClusterEngine. */
export interface RestartHost {
  readonly members: Members;
  /** Resolves with the worker's generation once it has greeted and synced. */
  whenSynced(workerId: number): Promise<number>;
}

export interface RestartOptions {
  /** How long an old worker may drain before it is killed (ms). */
  deadlineMs: number;
  /** How long a new worker may take to listen and sync (ms). */
  readyTimeoutMs?: number;
  onProgress?: (message: string, fraction: number) => void;
}

/** Fork one worker and wait until it listens and is synced. */
function forkReady(host: RestartHost, timeoutMs: number): Promise<{ id: number; pid: number; generation: number }> {
  const w = cluster.fork();
  return new Promise((resolve, reject) => {
    let listening = false;
    let generation: number | undefined;
    const finish = (err?: LivepatchError): void => {
      clearTimeout(timer);
      cluster.off('listening', onListening);
      w.off('exit', onExit);
      if (err) reject(err);
      else resolve({ id: w.id, pid: w.process.pid ?? 0, generation: generation! });
    };
    const check = (): void => {
      if (listening && generation !== undefined) finish();
    };
    const onListening = (worker: Worker): void => {
      if (worker !== w) return;
      listening = true;
      check();
    };
    const onExit = (): void =>
      finish(
        new LivepatchError('LP_ERR_CLUSTER_WORKER', `the new worker ${w.id} exited before it was ready; the old workers keep serving`),
      );
    const timer = setTimeout(() => {
      w.process.kill('SIGKILL');
      finish(
        new LivepatchError(
          'LP_ERR_CLUSTER_WORKER',
          `the new worker ${w.id} did not listen and sync in ${timeoutMs} ms; it was stopped, the old workers keep serving`,
        ),
      );
    }, timeoutMs);
    cluster.on('listening', onListening);
    w.on('exit', onExit);
    host.whenSynced(w.id).then(
      (g) => {
        generation = g;
        check();
      },
      () => undefined,
    );
  });
}

/** Drain, disconnect, and (at the deadline) kill one old worker. Resolves with how it ended. */
async function stopGracefully(host: RestartHost, m: Member, deadlineMs: number): Promise<'exited' | 'killed'> {
  const w = m.worker;
  if (w.isDead()) return 'exited';
  const exited = new Promise<void>((r) => w.once('exit', () => r()));
  await host.members.request(m, { type: 'drain', deadlineMs }, 5000).catch(() => undefined);
  try {
    w.disconnect();
  } catch {
    // Already disconnecting or gone; the exit wait below settles it.
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'killed'>((r) => {
    timer = setTimeout(() => {
      w.process.kill('SIGKILL');
      r('killed');
    }, deadlineMs + 2000);
  });
  const how = await Promise.race([exited.then(() => 'exited' as const), late]);
  clearTimeout(timer);
  return how;
}

/** Replace every current worker, one at a time (see the file header). */
export async function rollingRestart(host: RestartHost, opts: RestartOptions): Promise<Omit<RestartResult, 'generation'>> {
  const started = Date.now();
  const old = host.members.list();
  if (old.length === 0) throw new LivepatchError('LP_ERR_CLUSTER_NONE', 'This cluster has no livepatch workers to restart');
  const replaced: RestartResult['replaced'] = [];
  for (const [i, m] of old.entries()) {
    if (!host.members.has(m)) continue;
    opts.onProgress?.(`starting a replacement for worker ${m.id} (pid ${m.pid})`, i / old.length);
    const fresh = await forkReady(host, opts.readyTimeoutMs ?? 30_000);
    opts.onProgress?.(
      `worker ${fresh.id} (pid ${fresh.pid}) serves generation ${fresh.generation}; draining worker ${m.id}`,
      (i + 0.5) / old.length,
    );
    const ended = await stopGracefully(host, m, opts.deadlineMs);
    replaced.push({ old: { id: m.id, pid: m.pid }, new: fresh, ended });
  }
  return { replaced, durationMs: Date.now() - started };
}
