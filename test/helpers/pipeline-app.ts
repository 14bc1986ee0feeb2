/**
 * Parent side of pipeline-driver.ts: spawns a project's app as a real child (`-r livepatch/register`
 * plus the driver, no agent) with an IPC channel, waits for `app listening on PORT`, and sends
 * pipeline ops. Errors come back in wire form ({ code, message, details }).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { WireError } from '../../shared/errors';
import type { Progress } from '../../server/pipeline/types';

export interface PipelineApp {
  child: ChildProcess;
  httpPort: number;
  stdout(): string;
  stderr(): string;
  get(path: string): Promise<any>;
  /** Run a pipeline op; resolves `{ ok, result | error, progress[] }`. */
  op(op: string, args?: unknown): Promise<{ ok: boolean; result?: any; error?: WireError; progress: Progress[] }>;
  stop(): Promise<void>;
}

/** Start `root`'s dist/main.js with the driver; `pipelineOpts` become PipelineOptions (besides engine/root). */
export function startPipelineApp(root: string, pipelineOpts: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<PipelineApp> {
  const env: NodeJS.ProcessEnv = { ...process.env, LIVEPATCH_ROOT: root, LP_PIPELINE_OPTS: JSON.stringify(pipelineOpts) };
  delete env.LIVEPATCH_TOKENS;
  const driver = join(__dirname, 'pipeline-driver.js');
  const child = spawn(process.execPath, ['-r', 'livepatch/register', '-r', driver, 'dist/main.js'], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  let err = '';
  let next = 1;
  const waiting = new Map<number, { resolve: (v: any) => void; progress: Progress[] }>();
  child.on('message', (m: any) => {
    const w = waiting.get(m.id);
    if (!w) return;
    if (m.progress) w.progress.push(m.progress);
    else {
      waiting.delete(m.id);
      w.resolve({ ok: m.ok, result: m.result, error: m.error, progress: w.progress });
    }
  });
  child.on('exit', (code, signal) => {
    for (const [id, w] of waiting) {
      waiting.delete(id);
      w.resolve({
        ok: false,
        error: { code: 'LP_ERR_CONN_CLOSED', message: `app exited (${code ?? signal})`, retryable: false },
        progress: w.progress,
      });
    }
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`app did not start\nstdout:\n${out}\nstderr:\n${err}`));
    }, timeoutMs);
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`app exited early (${code})\nstdout:\n${out}\nstderr:\n${err}`));
    };
    child.once('exit', onExit);
    const poll = setInterval(() => {
      const m = /app listening on (\d+)/.exec(out);
      if (!m) return;
      clearInterval(poll);
      clearTimeout(timer);
      child.off('exit', onExit);
      const httpPort = Number(m[1]);
      resolve({
        child,
        httpPort,
        stdout: () => out,
        stderr: () => err,
        async get(path) {
          const res = await fetch(`http://127.0.0.1:${httpPort}${path}`);
          const text = await res.text();
          if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${text}`);
          return JSON.parse(text);
        },
        op(op, args) {
          return new Promise((r) => {
            const id = next++;
            waiting.set(id, { resolve: r, progress: [] });
            child.send({ id, op, args });
          });
        },
        stop() {
          return new Promise((r) => {
            if (child.exitCode !== null || child.signalCode !== null) return r();
            child.once('exit', () => r());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 3000).unref();
          });
        },
      });
    }, 20);
    child.once('exit', () => clearInterval(poll));
  });
}
