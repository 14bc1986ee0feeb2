/**
 * Harness for the framework fixtures (express, run on Express 5 and 4; fastify; nest): a throwaway copy of the
 * fixture with the framework packages linked from this repository's node_modules, built by the
 * TypeScript compiler with the fixture's own tsconfig (type errors fail the build), and run either
 * plain (`node dist/...`) or with `-r livepatch/register`, an agent and tokens.
 */
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ts from 'typescript';
import { freePort, launch } from '../../testkit/launch';
import {
  createProject,
  createTokens,
  FIXTURES,
  HTTP_LINE,
  REPO,
  readTsconfig,
  runCli,
  startApp,
  type AppProcess,
  type Project,
  type Tokens,
} from './project';

/** Compile the project at `root` with its tsconfig.json; throws with tsc-style diagnostics on any error. */
export function tscBuild(root: string): void {
  const cfg = readTsconfig(root);
  const program = ts.createProgram({ rootNames: cfg.fileNames, options: cfg.options });
  const emitted = program.emit();
  const diags = [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics];
  if (diags.length) {
    const host: ts.FormatDiagnosticsHost = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' };
    throw new Error(`fixture does not compile:\n${ts.formatDiagnostics(diags, host)}`);
  }
}

/**
 * A copy of `fixture` whose node_modules links `packages` (name in the app → package folder under
 * this repository's node_modules, e.g. `{ express: 'express4' }`), with the shared `src/hold.ts`
 * (requests held open on purpose), built with tsc.
 */
export function createFrameworkProject(fixture: string, packages: Record<string, string>): Project {
  const project = createProject(fixture);
  try {
    copyFileSync(join(FIXTURES, 'hold.ts'), join(project.root, 'src', 'hold.ts'));
    for (const [name, from] of Object.entries(packages)) {
      const target = join(project.root, 'node_modules', name);
      mkdirSync(dirname(target), { recursive: true });
      symlinkSync(join(REPO, 'node_modules', from), target, 'dir');
    }
    tscBuild(project.root);
    return project;
  } catch (e) {
    project.cleanup();
    throw e;
  }
}

/** A TCP port that was free a moment ago (apps listen on a fixed port, as deployed ones do). */
export { freePort };

export interface Reply {
  status: number;
  type: string;
  body: string;
}

/** One HTTP request to the app; status, content type (without parameters) and raw body. */
export async function request(port: number, path: string, init: { method?: string; json?: unknown } = {}): Promise<Reply> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: init.method ?? 'GET',
    ...(init.json !== undefined ? { body: JSON.stringify(init.json), headers: { 'content-type': 'application/json' } } : {}),
  });
  return { status: res.status, type: (res.headers.get('content-type') ?? '').split(';')[0]!, body: await res.text() };
}

export interface PlainApp extends AsyncDisposable {
  child: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

/** Start `entry` with plain node (no livepatch) on `port`; resolves on `app listening on PORT`. */
export async function startPlain(root: string, entry: string, port: number): Promise<PlainApp> {
  const proc = await launch({
    args: [entry],
    cwd: root,
    env: { PORT: String(port), NODE_OPTIONS: undefined },
    name: 'plain app',
    group: true,
    ready: [{ stream: 'stdout', pattern: HTTP_LINE }],
  });
  return { child: proc.child, port, stop: proc.stop, [Symbol.asyncDispose]: proc.stop };
}

export interface LiveApp {
  project: Project;
  tokens: Tokens;
  app: AppProcess;
  agent: string;
  port: number;
  /** `livepatch apply <agent> <patch files> --root patch --json` with a patch token, in the project. */
  apply(files: string[], extra?: string[]): Promise<{ code: number; stdout: string; stderr: string; json: any }>;
  /** `livepatch eval` with an admin token; the parsed `--json` result (`output` is the printed value). */
  evaluate(expression: string): Promise<any>;
  stop(): Promise<void>;
}

/** Start the project's `entry` with `-r livepatch/register`, an agent, tokens and an audit log. */
export async function startLive(project: Project, entry: string, port: number): Promise<LiveApp> {
  const tokens = createTokens(project.root);
  const app = await startApp(project.root, {
    entry,
    env: { PORT: String(port), LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_AUDIT: join(project.root, 'audit.jsonl'), NODE_OPTIONS: undefined },
  });
  const cli = (args: string[], token: string) => runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: token } });
  return {
    project,
    tokens,
    app,
    agent: app.agent!,
    port: app.httpPort,
    async apply(files, extra = []) {
      const r = await cli(['apply', app.agent!, ...files, '--root', 'patch', '--json', ...extra], tokens.patch);
      let json: any;
      try {
        json = JSON.parse(r.stdout);
      } catch {
        json = undefined;
      }
      return { ...r, json };
    },
    async evaluate(expression) {
      const r = await cli(['eval', app.agent!, expression, '--json'], tokens.admin);
      if (r.code !== 0) throw new Error(`eval exited ${r.code}: ${r.stdout}${r.stderr}`);
      return JSON.parse(r.stdout);
    },
    stop: () => app.stop(),
  };
}

/** The error code of a failed `apply --json`, or undefined. */
export function errorCode(r: { json: any }): string | undefined {
  return r.json?.error?.code ?? r.json?.hosts?.[0]?.error?.code;
}

/** Describe an apply run for assertion messages. */
export function describeRun(r: { code: number; stdout: string; stderr: string }): string {
  return `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

/** `text` with `from` replaced by `to`; throws when `from` is not there (a patch that silently changed nothing). */
export function edit(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`edit: ${JSON.stringify(from)} not found`);
  return text.split(from).join(to);
}

/** Wait until the app's `heldPath` reports at least `n` held requests. */
export async function waitHeld(port: number, heldPath: string, n = 1, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await request(port, heldPath);
    if (r.status !== 200) throw new Error(`${heldPath} answered ${r.status} ${r.body}`);
    if (JSON.parse(r.body).held >= n) return;
    if (Date.now() > until) throw new Error(`no request held after ${timeoutMs} ms (last: ${r.status} ${r.body})`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

/** A held request (`slowPath`) and its release: both replies, for comparing two runs of one app. */
export async function heldAndReleased(port: number, paths: { slow: string; held: string; release: string }): Promise<Reply[]> {
  const slow = request(port, paths.slow);
  slow.catch(() => undefined); // awaited below, unless holding fails first
  await waitHeld(port, paths.held);
  const released = await request(port, paths.release, { method: 'POST' });
  return [await slow, released];
}

export interface Step {
  method?: string;
  path: string;
  json?: unknown;
}

/**
 * Every step in order, then a held request and its release; each reply labelled `METHOD path`. A held
 * request that cannot be held is recorded as status 0 with the reason, so runs compare as a whole.
 */
export async function exercise(
  port: number,
  steps: Step[],
  hold: { slow: string; held: string; release: string },
): Promise<Array<[string, Reply]>> {
  const out: Array<[string, Reply]> = [];
  for (const s of steps) out.push([`${s.method ?? 'GET'} ${s.path}`, await request(port, s.path, s)]);
  try {
    const [slow, released] = await heldAndReleased(port, hold);
    out.push([`GET ${hold.slow}`, slow!], [`POST ${hold.release}`, released!]);
  } catch (e) {
    out.push([`GET ${hold.slow}`, { status: 0, type: '', body: (e as Error).message }]);
  }
  return out;
}

/** What the app answers to `steps` (and a held request) under plain node, without livepatch. */
export async function plainAnswers(
  project: Project,
  entry: string,
  steps: Step[],
  hold: { slow: string; held: string; release: string },
): Promise<Array<[string, Reply]>> {
  const plain = await startPlain(project.root, entry, await freePort());
  try {
    return await exercise(plain.port, steps, hold);
  } finally {
    await plain.stop();
  }
}
