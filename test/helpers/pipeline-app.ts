/**
 * Parent side of pipeline-driver.ts: spawns a project's app as a real child (`-r livepatch/register`
 * plus the driver, no agent) with an IPC channel, waits for `app listening on PORT`, and sends
 * pipeline ops. Errors come back in wire form ({ code, message, details }).
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { WireError } from '../../shared/errors';
import type { Progress } from '../../server/pipeline/types';
import { launch, type Launched } from '../../testkit/launch';
import { getJson, HTTP_LINE } from './project';

export interface PipelineApp extends AsyncDisposable {
  child: ChildProcess;
  httpPort: number;
  stdout(): string;
  stderr(): string;
  get(path: string): Promise<any>;
  /** Run a pipeline op; resolves `{ ok, result | error, progress[] }` (rejects if the app exits first). */
  op(op: string, args?: unknown): Promise<{ ok: boolean; result?: any; error?: WireError; progress: Progress[] }>;
  /** The launched process: output, waitFor(), exited. */
  proc: Launched;
  stop(): Promise<void>;
}

/** Start `root`'s dist/main.js with the driver; `pipelineOpts` become PipelineOptions (besides engine/root). */
export async function startPipelineApp(root: string, pipelineOpts: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<PipelineApp> {
  const proc = await launch({
    args: ['-r', 'livepatch/register', '-r', join(__dirname, 'pipeline-driver.js'), 'dist/main.js'],
    cwd: root,
    env: { LIVEPATCH_ROOT: root, LP_PIPELINE_OPTS: JSON.stringify(pipelineOpts), LIVEPATCH_TOKENS: undefined },
    ipc: true,
    group: true,
    ready: [{ stream: 'stdout', pattern: HTTP_LINE }],
    timeoutMs,
  });
  const httpPort = Number(proc.ready[0]![1]);
  return {
    child: proc.child,
    httpPort,
    stdout: proc.stdout,
    stderr: proc.stderr,
    get: (path) => getJson(httpPort, path),
    async op(op, args) {
      const progress: Progress[] = [];
      const m: any = await proc.request({ op, args }, (r) => {
        if (r['progress'] === undefined) return false;
        progress.push(r['progress'] as Progress);
        return true;
      });
      return { ok: m.ok, result: m.result, error: m.error, progress };
    },
    proc,
    stop: proc.stop,
    [Symbol.asyncDispose]: proc.stop,
  };
}
