/**
 * Engine tests' harness: a fixture app run as a real child process with `-r livepatch/register` and
 * the engine driver preloaded (IPC), plus patch building (TypeScript → CommonJS with ts.transpileModule).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import * as ts from 'typescript';
import type { StageChange } from '../../server/engine/types';

export const DRIVER = join(__dirname, 'engine-driver.js');

export interface EngineApp {
  child: ChildProcess;
  httpPort: number;
  stderr(): string;
  /** GET a path on the app and parse JSON. */
  get(path: string): Promise<any>;
  /** Send an op to the driver; resolves with its reply `{ ok, result | error }`. */
  call(
    op: string,
    args?: Record<string, unknown>,
  ): Promise<{ ok: boolean; result?: any; error?: { code?: string; message: string; details?: any } }>;
  /** Like call, but rejects unless ok. */
  ok(op: string, args?: Record<string, unknown>): Promise<any>;
  stop(): Promise<void>;
}

/** Transpile TypeScript sources (id → source) into stage changes (ES module syntax with `esm`). */
export function changes(files: Record<string, string>, opts: { esm?: boolean } = {}): StageChange[] {
  return Object.entries(files).map(([id, source]) => ({ id, source, js: transpile(id, source, opts.esm) }));
}

/** CommonJS (or, with `esm`, ES module) JS for one module, with the fixtures' compiler options. */
export function transpile(id: string, source: string, esm = false): string {
  return ts.transpileModule(source, {
    fileName: id,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: esm ? ts.ModuleKind.ESNext : ts.ModuleKind.CommonJS,
      esModuleInterop: true,
      strict: true,
    },
  }).outputText;
}

export interface EngineAppOptions {
  entry?: string;
  /** Preloads before the register (e.g. ts-node/register). */
  before?: string[];
  execArgv?: string[];
  env?: Record<string, string | undefined>;
}

/** Start the app at `root` with the engine and the driver. */
export function startEngineApp(root: string, opts: EngineAppOptions = {}): Promise<EngineApp> {
  const env: NodeJS.ProcessEnv = { ...process.env, LIVEPATCH_ROOT: root, LIVEPATCH_TOKENS: undefined, ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const pre = [...(opts.before ?? []), 'livepatch/register', DRIVER].flatMap((p) => ['-r', p]);
  const child = spawn(process.execPath, [...(opts.execArgv ?? []), ...pre, opts.entry ?? 'dist/main.js'], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  let err = '';
  let seq = 0;
  let started = false;
  const waiting = new Map<number, (r: any) => void>();
  child.on('message', (m: any) => {
    waiting.get(m.id)?.(m);
    waiting.delete(m.id);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`app did not start\nstdout:\n${out}\nstderr:\n${err}`));
    }, 30_000);
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`app exited early (${code})\nstdout:\n${out}\nstderr:\n${err}`));
    };
    child.once('exit', onExit);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /app listening on (\d+)/.exec(out);
      if (!m || started) return;
      started = true;
      clearTimeout(timer);
      child.off('exit', onExit);
      const httpPort = Number(m[1]);
      const app: EngineApp = {
        child,
        httpPort,
        stderr: () => err,
        async get(path) {
          const res = await fetch(`http://127.0.0.1:${httpPort}${path}`);
          const text = await res.text();
          if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${text}`);
          return JSON.parse(text);
        },
        call(op, args = {}) {
          const id = ++seq;
          return new Promise((r) => {
            waiting.set(id, r);
            child.send({ id, op, ...args });
          });
        },
        async ok(op, args) {
          const r = await app.call(op, args);
          if (!r.ok) throw new Error(`${op} failed: ${r.error?.code} ${r.error?.message}`);
          return r.result;
        },
        stop() {
          return new Promise((r) => {
            if (child.exitCode !== null || child.signalCode !== null) return r();
            child.once('exit', () => r());
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 3000).unref();
          });
        },
      };
      resolve(app);
    });
  });
}
