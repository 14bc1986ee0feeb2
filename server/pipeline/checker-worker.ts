/**
 * Worker-thread entry of the checker: owns one ProgramChecker (shared/typecheck.ts) for the life of
 * the worker so every check after the first is incremental, and transpiles the checked modules in the
 * same round trip. Runs off the host's event loop; the host talks to it through checker-client.ts.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { LivepatchError } from '../../shared/errors';
import { ProgramChecker } from '../../shared/typecheck';
import type { CheckerRequest, CheckerResponse, CheckerWorkerData } from './checker-protocol';

const data = workerData as CheckerWorkerData;
let checker: ProgramChecker | undefined;

/**
 * Lower this thread's scheduling priority (Linux: setpriority on the thread id, which
 * /proc/thread-self names) so that on a busy machine the host's event loop wins the CPU over a check.
 */
function yieldToHost(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, 10);
  } catch {
    // Not Linux, or not permitted: the check just runs at normal priority.
  }
}
yieldToHost();

function post(msg: CheckerResponse): void {
  parentPort!.postMessage(msg);
}

function handle(req: CheckerRequest): void {
  try {
    checker ??= new ProgramChecker(data.root, data.tsconfig, { assumeDirectOnly: data.assumeDirectOnly });
    const c = checker;
    // At most a few progress messages a second: a cold check walks hundreds of files.
    let last = 0;
    const check = c.check(new Map(req.overlay), (p) => {
      const now = Date.now();
      if (now - last < 200 && p.done !== 0 && p.done !== p.total) return;
      last = now;
      post({ id: req.id, type: 'progress', progress: p });
    });
    const js: Record<string, string> = {};
    const transpileDiagnostics = [];
    // Transpile only when the check passed: a rejected patch never needs its JS.
    if (!check.hasErrors) {
      for (const id of req.transpile) {
        const out = c.transpile(id, req.overlay.find(([file]) => file === c.pathOf(id))?.[1] ?? '');
        js[id] = out.js;
        transpileDiagnostics.push(...out.diagnostics);
      }
    }
    let verifyJs: string | undefined;
    if (req.verify !== undefined) {
      const out = c.transpile('__verify__.ts', req.verify);
      verifyJs = out.js;
      transpileDiagnostics.push(...out.diagnostics);
    }
    post({ id: req.id, type: 'result', check, js, verifyJs, transpileDiagnostics });
  } catch (err) {
    const e = err instanceof LivepatchError ? err : new LivepatchError('LP_ERR_INTERNAL', `checker failed: ${(err as Error)?.message ?? String(err)}`);
    post({ id: req.id, type: 'error', code: e.code, message: e.message });
  }
}

parentPort!.on('message', (req: CheckerRequest) => handle(req));
