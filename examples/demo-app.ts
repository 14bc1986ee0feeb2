/**
 * Demo runner, part 1: prepare and run the example shop with the agent.
 *
 * The shop is run from a fresh copy in a temporary directory, never from examples/shop itself: the
 * source tree stays clean (no dist/, no links), a demo and the test can run at the same time, and the
 * app sits outside the livepatch package like a real application (the engine does not make modules
 * of its own package live). The copy imports `livepatch` like any installed dependency:
 * `node_modules/livepatch` and `node_modules/@types` in the copy link to this repository, so Node's
 * resolver and the TypeScript compiler find them in the build, at run time (`-r livepatch/register`)
 * and in the agent's type checker.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, cpSync, mkdirSync, openSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { addToken } from '../shared';
import { launch, type Launched } from '../testkit/launch';

/** Repository root (this file runs as dist/examples/demo-app.js). */
export const REPO = resolve(__dirname, '..', '..');
/** The example's sources in the repository. */
export const SHOP = join(REPO, 'examples', 'shop');
export const CLI = join(REPO, 'dist', 'client', 'cli', 'main.js');

/** How much of the shop's output is kept in memory. */
const OUTPUT_TAIL = 64 * 1024;

/**
 * Copy examples/shop (sources, patches, tsconfig) to `<dir>/shop`, link `livepatch` and `@types`, and
 * type-check + compile it with the repository's TypeScript. Returns the copy's root. Throws with tsc's
 * output when the build fails.
 */
export function prepareShop(dir: string, opts: { esm?: boolean } = {}): string {
  const root = join(dir, 'shop');
  mkdirSync(join(root, 'node_modules'), { recursive: true });
  for (const part of ['src', 'patches', 'package.json', 'tsconfig.json']) cpSync(join(SHOP, part), join(root, part), { recursive: true });
  if (opts.esm) toEsm(root);
  symlinkSync(REPO, join(root, 'node_modules', 'livepatch'), 'dir');
  symlinkSync(join(REPO, 'node_modules', '@types'), join(root, 'node_modules', '@types'), 'dir');
  const tsc = require.resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building examples/shop failed:\n${r.stdout}${r.stderr}`);
  return root;
}

/**
 * Turn a copy of the shop into the same app as ES modules (`"type": "module"`, tsc `module: NodeNext`):
 * relative imports get their `.js` extension, as NodeNext requires. The code is otherwise unchanged.
 */
function toEsm(root: string): void {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(root, 'package.json'), JSON.stringify({ ...pkg, type: 'module' }, null, 2));
  const cfg = readFileSync(join(root, 'tsconfig.json'), 'utf8')
    .replace('"module": "node16"', '"module": "NodeNext"')
    .replace('"moduleResolution": "node16"', '"moduleResolution": "NodeNext"');
  writeFileSync(join(root, 'tsconfig.json'), cfg);
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) writeFileSync(p, esmImports(readFileSync(p, 'utf8')));
    }
  };
  walk(join(root, 'src'));
  walk(join(root, 'patches'));
}

/** Relative import specifiers with the `.js` extension NodeNext requires. */
export function esmImports(source: string): string {
  return source.replace(/(from\s+['"])(\.{1,2}\/[^'"]+?)(['"])/g, (m, a: string, spec: string, b: string) =>
    /\.[cm]?js$/.test(spec) ? m : `${a}${spec}.js${b}`,
  );
}

/** A development token with the admin role, in a tokens file under `dir`; the token is also saved to a 0600 file. */
export function createDevToken(dir: string): { tokensFile: string; token: string; tokenFile: string } {
  const tokensFile = join(dir, 'tokens.json');
  const { token } = addToken(tokensFile, 'demo', 'admin');
  const tokenFile = join(dir, 'demo.token');
  writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
  return { tokensFile, token, tokenFile };
}

export interface ShopProcess extends AsyncDisposable {
  /** The shop copy's root directory. */
  root: string;
  child: ChildProcess;
  /** Agent address as printed by the agent, e.g. `127.0.0.1:12345`. */
  agent: string;
  httpPort: number;
  /** GET or POST a path; resolves with status and parsed JSON body. */
  http(method: 'GET' | 'POST', path: string): Promise<{ status: number; body: any }>;
  /** The tail of the shop's stdout and stderr (for failure reports). */
  output(): string;
  /** SIGTERM, then SIGKILL after 3 s; resolves once the process has exited. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** The shop copy to run (from prepareShop). */
  root: string;
  /** Agent address for LIVEPATCH_LISTEN. */
  listen: string;
  tokensFile: string;
  /** Where the agent's audit log goes (keeps the source tree clean). */
  stateDir: string;
  /** HTTP port (0 = any free one). */
  port: number;
  /** Append the shop's stdout/stderr here instead of keeping it in memory (the TUI owns the terminal). */
  logFile?: string;
  timeoutMs?: number;
  /** A command that runs node (LaunchOptions.wrapper), e.g. valgrind for bench/instructions.ts. */
  wrapper?: readonly string[];
}

/** Start `node -r livepatch/register dist/main.js` in the shop and wait for the agent and HTTP lines. */
export async function startShop(opts: StartOptions): Promise<ShopProcess> {
  let log = opts.logFile ? openSync(opts.logFile, 'a') : undefined;
  const closeLog = (): void => {
    if (log !== undefined) closeSync(log);
    log = undefined;
  };
  let proc: Launched;
  try {
    proc = await launch({
      args: ['-r', 'livepatch/register', 'dist/main.js'],
      ...(opts.wrapper ? { wrapper: opts.wrapper } : {}),
      cwd: opts.root,
      env: {
        LIVEPATCH_LISTEN: opts.listen,
        LIVEPATCH_TOKENS: opts.tokensFile,
        LIVEPATCH_ROOT: opts.root,
        LIVEPATCH_AUDIT: join(opts.stateDir, 'audit.jsonl'),
        LIVEPATCH_JOURNAL: undefined,
        PORT: String(opts.port),
      },
      name: 'shop',
      keep: OUTPUT_TAIL,
      onOutput: (_, d) => {
        if (log !== undefined) writeFileSync(log, d);
      },
      ready: [
        { stream: 'stderr', pattern: /livepatch: agent listening on (\S+)/ },
        { stream: 'stdout', pattern: /app listening on (\d+)/ },
      ],
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
  } catch (e) {
    closeLog();
    throw e;
  }
  // After its last output: the pipes close after the exit.
  proc.child.once('close', closeLog);
  const httpPort = Number(proc.ready[1]![1]);
  return {
    root: opts.root,
    child: proc.child,
    agent: proc.ready[0]![1]!,
    httpPort,
    output: proc.output,
    async http(method, path) {
      const res = await fetch(`http://127.0.0.1:${httpPort}${path}`, { method });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // Keep the raw text.
      }
      return { status: res.status, body };
    },
    stop: proc.stop,
    [Symbol.asyncDispose]: proc.stop,
  };
}
