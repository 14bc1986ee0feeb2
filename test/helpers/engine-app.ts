/**
 * Engine tests' harness: a fixture app run as a real child process with `-r livepatch/register` and
 * the engine driver preloaded (IPC), plus patch building (TypeScript → CommonJS with ts.transpileModule).
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import * as ts from 'typescript';
import type { StageChange } from '../../server/engine/types';
import { launch, type Launched } from '../../testkit/launch';
import { getJson, HTTP_LINE } from './project';

export const DRIVER = join(__dirname, 'engine-driver.js');

export interface EngineApp extends AsyncDisposable {
  child: ChildProcess;
  httpPort: number;
  stderr(): string;
  /** GET a path on the app and parse JSON. */
  get(path: string): Promise<any>;
  /** Send an op to the driver; resolves with its reply `{ ok, result | error }` (rejects if the app exits first). */
  call(
    op: string,
    args?: Record<string, unknown>,
  ): Promise<{ ok: boolean; result?: any; error?: { code?: string; message: string; details?: any } }>;
  /** Like call, but rejects unless ok. */
  ok(op: string, args?: Record<string, unknown>): Promise<any>;
  /** The launched process: output, waitFor(), exited. */
  proc: Launched;
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
export async function startEngineApp(root: string, opts: EngineAppOptions = {}): Promise<EngineApp> {
  const pre = [...(opts.before ?? []), 'livepatch/register', DRIVER].flatMap((p) => ['-r', p]);
  const proc = await launch({
    args: [...(opts.execArgv ?? []), ...pre, opts.entry ?? 'dist/main.js'],
    cwd: root,
    env: { LIVEPATCH_ROOT: root, LIVEPATCH_TOKENS: undefined, ...opts.env },
    ipc: true,
    group: true,
    ready: [{ stream: 'stdout', pattern: HTTP_LINE }],
  });
  const httpPort = Number(proc.ready[0]![1]);
  const app: EngineApp = {
    child: proc.child,
    httpPort,
    stderr: proc.stderr,
    get: (path) => getJson(httpPort, path),
    call: (op, args = {}) => proc.request({ op, ...args }) as Promise<any>,
    async ok(op, args) {
      const r = await app.call(op, args);
      if (!r.ok) throw new Error(`${op} failed: ${r.error?.code} ${r.error?.message}`);
      return r.result;
    },
    proc,
    stop: proc.stop,
    [Symbol.asyncDispose]: proc.stop,
  };
  return app;
}
