/**
 * Test harness: a throwaway copy of a fixture project, built like a real deployment, and the app run
 * as a real child process with `-r livepatch/register`.
 *
 * The project lives in a temp dir with `node_modules/livepatch` and `node_modules/@types` linked to
 * this repository, so the app resolves `livepatch` as an installed dependency would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import * as ts from 'typescript';
import { isEsModuleFile } from '../../shared/module-format';
import { addToken, type Role } from '../../shared';

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
      rmSync(root, { recursive: true, force: true });
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

export function buildProject(root: string): void {
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
  if (!cfg) throw new Error('no tsconfig');
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
export function createTokens(dir: string): Tokens {
  const file = join(dir, 'tokens.json');
  const t = (name: string, role: Role) => addToken(file, name, role).token;
  return { file, read: t('reader', 'read'), patch: t('patcher', 'patch'), admin: t('root', 'admin') };
}

export interface AppProcess {
  child: ChildProcess;
  /** Agent address `127.0.0.1:PORT` (undefined when the agent did not start). */
  agent: string | undefined;
  /** The app's HTTP port. */
  httpPort: number;
  stdout(): string;
  stderr(): string;
  /** GET a path on the app, parse JSON. */
  get(path: string): Promise<any>;
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

/** Start the project's app as a child process with `-r livepatch/register`. */
export function startApp(root: string, opts: StartOptions = {}): Promise<AppProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, LIVEPATCH_LISTEN: '127.0.0.1:0', LIVEPATCH_ROOT: root, ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const child = spawn(process.execPath, [...(opts.execArgv ?? []), '-r', 'livepatch/register', opts.entry ?? 'dist/main.js'], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waitAgent = opts.waitAgent ?? Boolean(env['LIVEPATCH_TOKENS']);
  return new Promise((resolveStart, reject) => {
    let agent: string | undefined;
    let httpPort: number | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`app did not start in time\nstdout:\n${out}\nstderr:\n${err}`));
    }, opts.timeoutMs ?? 30_000);
    const check = () => {
      if (httpPort === undefined || (waitAgent && agent === undefined)) return;
      clearTimeout(timer);
      const app: AppProcess = {
        child,
        agent,
        httpPort,
        stdout: () => out,
        stderr: () => err,
        async get(path) {
          const res = await fetch(`http://127.0.0.1:${httpPort}${path}`);
          const text = await res.text();
          if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${text}`);
          return JSON.parse(text);
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
      resolveStart(app);
    };
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /app listening on (\d+)/.exec(out);
      if (m && httpPort === undefined) {
        httpPort = Number(m[1]);
        check();
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /livepatch: agent listening on (\S+)/.exec(err);
      if (m && agent === undefined) {
        agent = m[1];
        check();
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`app exited early (${code ?? signal})\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });
}

/** Run the built CLI; resolves with exit code and output (never rejects on non-zero exit). */
export function runCli(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? REPO, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`livepatch ${args.join(' ')} timed out\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}
