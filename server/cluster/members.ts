/**
 * The primary's view of its workers: which ones run livepatch (they said hello), their last reported
 * state, and request/reply over the cluster IPC channel. A worker that exits or disconnects fails
 * its pending requests at once, so a fan-out never waits on a dead process.
 */
import cluster, { type Worker } from 'node:cluster';
import { LivepatchError } from '../../shared/errors';
import { payloadOf, wrap, type Command, type WorkerHealth, type WorkerMessage, type WorkerState } from './protocol';

/** One livepatch-enabled worker. */
export interface Member {
  readonly worker: Worker;
  readonly id: number;
  readonly pid: number;
  state?: WorkerState;
}

/** A reply: the worker's state, and the stage id for `stage`. */
export interface Reply {
  state?: WorkerState;
  stageId?: string;
  /** For `stage`: module id → the version number the worker's engine gave it. */
  versions?: Record<string, number>;
  /** For `health`: the worker's counters. */
  health?: WorkerHealth;
}

interface Pending {
  resolve(r: Reply): void;
  reject(e: LivepatchError): void;
  timer: NodeJS.Timeout;
}

/** Tracks members and carries commands to them. */
export class Members {
  private readonly members = new Map<number, Member>();
  private readonly pending = new Map<number, Map<number, Pending>>();
  private seq = 0;

  /** `onHello` runs when a worker greets (its sync must be sent right then, before any other command). */
  constructor(onHello: (m: Member) => void, onLeave: (m: Member) => void) {
    cluster.on('message', (worker: Worker, msg: unknown) => {
      const p = payloadOf<WorkerMessage>(msg);
      if (!p) return;
      try {
        if (p.type === 'hello') {
          const m: Member = { worker, id: worker.id, pid: typeof p.pid === 'number' ? p.pid : (worker.process.pid ?? 0) };
          this.members.set(worker.id, m);
          this.pending.set(worker.id, new Map());
          onHello(m);
        } else if (p.type === 'reply') {
          this.settle(worker.id, p);
        }
      } catch (e) {
        process.stderr.write(`livepatch: cluster message from worker ${worker.id} failed: ${(e as Error)?.message ?? e}\n`);
      }
    });
    const gone = (worker: Worker): void => {
      const m = this.members.get(worker.id);
      if (!m) return;
      this.members.delete(worker.id);
      const waiting = this.pending.get(worker.id);
      this.pending.delete(worker.id);
      for (const p of waiting?.values() ?? []) {
        clearTimeout(p.timer);
        p.reject(new LivepatchError('LP_ERR_INTERNAL', `worker ${worker.id} (pid ${m.pid}) exited`, { worker: worker.id, exited: true }));
      }
      onLeave(m);
    };
    cluster.on('exit', gone);
    cluster.on('disconnect', gone);
  }

  /** Members alive now, by worker id. */
  list(): Member[] {
    return [...this.members.values()].sort((a, b) => a.id - b.id);
  }

  has(m: Member): boolean {
    return this.members.get(m.id) === m;
  }

  /** Send a command; rejects with the worker's error, on its exit, or after `timeoutMs`. */
  request(m: Member, command: Command, timeoutMs: number): Promise<Reply> {
    const waiting = this.pending.get(m.id);
    if (!waiting || !this.has(m))
      return Promise.reject(new LivepatchError('LP_ERR_INTERNAL', `worker ${m.id} exited`, { worker: m.id, exited: true }));
    const seq = ++this.seq;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(seq);
        reject(
          new LivepatchError('LP_ERR_PATCH_TIMEOUT', `worker ${m.id} (pid ${m.pid}) did not answer ${command.type} in ${timeoutMs} ms`, {
            worker: m.id,
          }),
        );
      }, timeoutMs);
      waiting.set(seq, { resolve, reject, timer });
      const unreachable = (e: Error): void => {
        clearTimeout(timer);
        waiting.delete(seq);
        reject(new LivepatchError('LP_ERR_INTERNAL', `cannot reach worker ${m.id}: ${e.message}`, { worker: m.id, exited: true }));
      };
      try {
        // With a callback, a channel that closed under us is reported here instead of as an 'error'
        // event on the worker, which the app may not listen to (it would crash the primary).
        m.worker.send(wrap({ seq, command }), (err: Error | null) => {
          if (err) unreachable(err);
        });
      } catch (e) {
        unreachable(e as Error);
      }
    });
  }

  private settle(workerId: number, p: Extract<WorkerMessage, { type: 'reply' }>): void {
    const m = this.members.get(workerId);
    if (m && p.state) m.state = { ...m.state, ...p.state };
    const waiting = this.pending.get(workerId);
    const entry = waiting?.get(p.seq);
    if (!entry) return;
    waiting!.delete(p.seq);
    clearTimeout(entry.timer);
    if (p.ok)
      entry.resolve({
        state: p.state,
        ...(p.stageId ? { stageId: p.stageId } : {}),
        ...(p.versions ? { versions: p.versions } : {}),
        ...(p.health ? { health: p.health } : {}),
      });
    else entry.reject(LivepatchError.fromWire(p.error));
  }
}
