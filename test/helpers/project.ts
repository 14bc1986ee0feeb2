/**
 * Test harness: a throwaway copy of a fixture project, built like a real deployment, and the app run
 * as a real child process with `-r livepatch/register`.
 *
 * The project lives in a temp dir with `node_modules/livepatch` and `node_modules/@types` linked to
 * this repository, so the app resolves `livepatch` as an installed dependency would.
 */
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import * as ts from 'typescript';
import { isEsModuleFile } from '../../shared/module-format';
import { addToken, type Role } from '../../shared';
import { childEnv, launch, run, type Launched, type RunResult } from '../../testkit/launch';

/** Repository root (this file is dist/test/helpers/project.js once built). */
export const REPO = resolve(__dirname, '..', '..', '..');
export const FIXTURES = join(REPO, 'test', 'fixtures');
export const CLI = join(REPO, 'dist', 'client', 'cli', 'main.js');

export interface Project {
  root: string;
  /** Write (or overwrite) a source file relative to the root. */
  write(rel: string, text: string): void;
  /** Transpile every `.ts` under rootDir into outDir with the project's own compiler options. */
  build(): void;
  cleanup(): void;
}

export function createProject(fixture = 'basic'): Project {
  const root = mkdtempSync(join(tmpdir(), `lp-${fixture}-`));
  cpSync(join(FIXTURES, fixture), root, { recursive: true });
  mkdirSync(join(root, 'node_modules'), { recursive: true });
  symlinkSync(REPO, join(root, 'node_modules', 'livepatch'), 'dir');
  symlinkSync(join(REPO, 'node_modules', '@types'), join(root, 'node_modules', '@types'), 'dir');
  const project: Project = {
    root,
    write(rel, text) {
      mkdirSync(dirname(join(root, rel)), { recursive: true });
      writeFileSync(join(root, rel), text);
    },
    build() {
      buildProject(root);
    },
    cleanup() {
      // Retries: a type-check process the app started may still be exiting and writing its state or
      // Node's compile cache into the project's .livepatch folder (ENOTEMPTY otherwise).
      rmSync(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    },
  };
  project.build();
  return project;
}

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.[cm]?ts$/.test(p) && !/\.d\.[cm]?ts$/.test(p)) out.push(p);
  }
  return out;
}

/** The project's tsconfig.json, parsed; throws when there is none or it cannot be read. */
export function readTsconfig(root: string): ts.ParsedCommandLine {
  const cfg = ts.getParsedCommandLineOfConfigFile(
    join(root, 'tsconfig.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    },
  );
  if (!cfg) throw new Error(`no tsconfig in ${root}`);
  return cfg;
}

export function buildProject(root: string): void {
  const cfg = readTsconfig(root);
  const rootDir = cfg.options.rootDir ?? root;
  const outDir = cfg.options.outDir ?? root;
  for (const file of walk(rootDir)) {
    // transpileModule cannot tell a NodeNext file's format: give it the one Node will load it as.
    const compilerOptions = isEsModuleFile(file) ? { ...cfg.options, module: ts.ModuleKind.ESNext } : cfg.options;
    const out = ts.transpileModule(require('node:fs').readFileSync(file, 'utf8'), { compilerOptions, fileName: file });
    const target = join(outDir, relative(rootDir, file))
      .replace(/\.ts$/, '.js')
      .replace(/\.([cm])ts$/, '.$1js');
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, out.outputText);
  }
}

export interface Tokens {
  file: string;
  read: string;
  patch: string;
  admin: string;
}

/** A tokens file with one token of each role. */
/** Pids of TypeScript's native compiler serving a checker for `root` (its API server), anywhere on the machine (Linux /proc). */
export function nativeCompilerProcesses(root: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const args = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (args.includes('--api') && args[args.indexOf('--cwd') + 1] === root) out.push(Number(p));
    } catch {
      // The process is gone.
    }
  }
  return out;
}

export function createTokens(dir: string): Tokens {
  const file = join(dir, 'tokens.json');
  const t = (name: string, role: Role) => addToken(file, name, role).token;
  return { file, read: t('reader', 'read'), patch: t('patcher', 'patch'), admin: t('root', 'admin') };
}

export interface AppProcess extends AsyncDisposable {
  child: ChildProcess;
  /** Agent address `127.0.0.1:PORT` (undefined when the agent did not start). */
  agent: string | undefined;
  /** The app's HTTP port. */
  httpPort: number;
  stdout(): string;
  stderr(): string;
  /** GET a path on the app, parse JSON. */
  get(path: string): Promise<any>;
  /** The launched process: output, waitFor(), exited. */
  proc: Launched;
  stop(): Promise<void>;
}

export interface StartOptions {
  env?: Record<string, string | undefined>;
  /** Entry file relative to root (default dist/main.js). */
  entry?: string;
  execArgv?: string[];
  /** Wait for the agent line (default: true when LIVEPATCH_TOKENS is set). */
  waitAgent?: boolean;
  timeoutMs?: number;
}

/** The app's HTTP line on stdout, and the agent's on stderr. */
export const HTTP_LINE = /app listening on (\d+)/;
export const AGENT_LINE = /livepatch: agent listening on (\S+)/;

/** GET `path` on 127.0.0.1:`port` and parse the JSON body; throws on a non-2xx status. */
export async function getJson(port: number, path: string): Promise<any> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** Start the project's app as a child process with `-r livepatch/register`. */
export async function startApp(root: string, opts: StartOptions = {}): Promise<AppProcess> {
  const env = { LIVEPATCH_LISTEN: '127.0.0.1:0', LIVEPATCH_ROOT: root, ...opts.env };
  const waitAgent = opts.waitAgent ?? Boolean(childEnv(env)['LIVEPATCH_TOKENS']);
  const proc = await launch({
    args: [...(opts.execArgv ?? []), '-r', 'livepatch/register', opts.entry ?? 'dist/main.js'],
    cwd: root,
    env,
    group: true,
    ready: [{ stream: 'stdout', pattern: HTTP_LINE }, ...(waitAgent ? [{ stream: 'stderr' as const, pattern: AGENT_LINE }] : [])],
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
  });
  const httpPort = Number(proc.ready[0]![1]);
  // Without waiting for it, the agent's line may already be there.
  const agent = waitAgent ? proc.ready[1]![1] : AGENT_LINE.exec(proc.stderr())?.[1];
  return {
    child: proc.child,
    agent,
    httpPort,
    stdout: proc.stdout,
    stderr: proc.stderr,
    get: (path) => getJson(httpPort, path),
    proc,
    stop: proc.stop,
    [Symbol.asyncDispose]: proc.stop,
  };
}

/** Run the built CLI; resolves with exit code and output (never rejects on non-zero exit). */
export function runCli(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return run({ ...opts, args: [CLI, ...args], cwd: opts.cwd ?? REPO });
}
