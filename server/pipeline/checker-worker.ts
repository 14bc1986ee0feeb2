/**
 * Entry of the type-check service: a child process of the host, forked on the first check. It owns
 * one ProgramChecker (shared/typecheck.ts) for its life, shared by the pipeline's whole-program checks
 * (incremental after the first; the checked modules are transpiled in the same round trip) and the
 * REPL's input checks (server/repl/input-check.ts), so the host never has two programs built.
 *
 * A separate process, not a worker thread, because only a process gives its memory back: when it
 * exits (idle, or after a check that outgrew its heap limit) the kernel reclaims every page, where a
 * terminated thread leaves the host's allocator holding most of what it used. Its V8 heap is capped
 * by the host (`--max-old-space-size`), it runs at a lower scheduling priority than the host, and it
 * exits as soon as its IPC channel to the host closes.
 *
 * Whole-program checks run on one of two compilers (LIVEPATCH_CHECKER_ENGINE): TypeScript's native
 * compiler, driven from a thread of this process (native-thread.ts), or its JavaScript compiler on
 * the main thread. With 'auto' (the default), the native one is used when it is installed and agrees
 * with how the project builds (native-thread.ts); otherwise, and from the first time it fails, the
 * JavaScript compiler checks, for the rest of this process's life. The native thread starts before
 * the JavaScript compiler is loaded, so the two start up side by side. Transpiling and the REPL's
 * input checks always use the JavaScript compiler; once the REPL has asked, 'auto' checks patches
 * with it too, so that one checker process never holds two programs.
 */
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { LivepatchError } from '../../shared/errors';
import { nativeUnavailable } from '../../shared/native-typecheck';
import type * as Typecheck from '../../shared/typecheck';
import type { CheckProgress, ProgramCheckResult, ProgramChecker } from '../../shared/typecheck';
import type { CheckerRequest, CheckerResponse, CheckerWorkerData, ServiceRequest } from './checker-protocol';
import type { NativeThreadData, NativeThreadRequest, NativeThreadResponse } from './native-protocol';

const data = JSON.parse(process.env['LIVEPATCH_CHECKER_CONFIG'] ?? '{}') as CheckerWorkerData;
const engine = data.engine ?? 'auto';

try {
  // Let the host's event loop win the CPU on a busy machine, without starving the check: at nice 5
  // the checker gets about a quarter of a core against one busy process at nice 0 (at nice 10, under
  // 10 %: a check that needs seconds of CPU took minutes on a loaded host, past the REPL's timeout).
  // Set first: the native thread, and the native compiler's process, inherit it.
  setPriority(5);
} catch {
  // Not permitted: the check just runs at normal priority.
}

function post(msg: CheckerResponse): void {
  process.send?.(msg);
}

const message = (err: unknown): string => (err as Error)?.message ?? String(err);

/** The thread that drives the native compiler (native-thread.ts), while it is in use. */
class NativeThread {
  private readonly worker: Worker;
  /** Settles once the thread has built the program on disk: undefined, or why it is not to be used. */
  readonly ready: Promise<string | undefined>;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (r: ProgramCheckResult | string) => void; onProgress: (p: CheckProgress) => void }
  >();

  constructor() {
    const workerData: NativeThreadData = {
      root: data.root,
      gate: engine === 'auto',
      ...(data.tsconfig ? { tsconfig: data.tsconfig } : {}),
    };
    this.worker = new Worker(join(__dirname, 'native-thread.js'), { workerData });
    let onReady!: (off: string | undefined) => void;
    this.ready = new Promise((r) => (onReady = r));
    this.worker.on('message', (msg: NativeThreadResponse) => {
      if (msg.type === 'ready') return onReady(msg.off);
      const p = this.pending.get(msg.id);
      if (!p) return;
      if (msg.type === 'progress') return p.onProgress(msg.progress);
      this.pending.delete(msg.id);
      p.resolve(msg.type === 'result' ? msg.result : msg.off);
    });
    const fail = (why: string): void => {
      onReady(why);
      for (const p of this.pending.values()) p.resolve(why);
      this.pending.clear();
    };
    this.worker.on('error', (err) => fail(`the native compiler's thread failed: ${message(err)}`));
    this.worker.on('exit', (code) => fail(`the native compiler's thread stopped (exit code ${code})`));
  }

  /** The overlay of the last request sent, and its id (0: the disk's). */
  private last = { id: 0, overlay: new Map<string, string>() };

  /** The check's result, or (a string) why the native compiler is not to be used from now on. */
  async check(overlay: [string, string][], onProgress: (p: CheckProgress) => void): Promise<ProgramCheckResult | string> {
    const off = await this.ready;
    if (off !== undefined) return off;
    const id = this.nextId++;
    const next = new Map(overlay);
    let declarationsChanged = true;
    try {
      declarationsChanged = getChecker().declarationsDiffer(this.last.overlay, next);
    } catch {
      // Then the whole program is checked.
    }
    const since = this.last.id;
    this.last = { id, overlay: next };
    return new Promise((resolve) => {
      this.pending.set(id, { resolve, onProgress });
      this.worker.postMessage({ id, overlay, declarationsChanged, since } satisfies NativeThreadRequest);
    });
  }

  stop(): void {
    void this.worker.terminate();
  }
}

/** Why 'auto' stops using the native compiler once the REPL has asked for a check. */
const REPL_NOTE = "the REPL's input checks use the JavaScript compiler's program, and one checker process holds one program";

/** The native thread while whole-program checks may use it (`nativeOff` says why not, under 'auto'). */
let native: NativeThread | undefined;
let nativeOff: string | undefined;

function nativeOffBecause(why: string): void {
  nativeOff = why;
  native?.stop();
  native = undefined;
}

/** Start the native thread, unless the setting or the installation rules it out (then `nativeOff` says why). */
function startNative(): void {
  if (engine === 'typescript' || native || nativeOff !== undefined) return;
  const missing = nativeUnavailable();
  if (missing === undefined) native = new NativeThread();
  else nativeOffBecause(engine === 'native' ? `LIVEPATCH_CHECKER_ENGINE=native, but ${missing}` : missing);
}

// Started with a whole-program check to answer: the native thread starts now. A service started for
// the REPL starts it only when a check comes (the REPL alone needs no second compiler).
if (data.firstRequest !== 'repl') startNative();

// The JavaScript compiler: needed to transpile whichever compiler checks. Loaded now (while the native
// thread, if any, builds its program).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ProgramChecker: JsChecker } = require('../../shared/typecheck') as typeof Typecheck;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { checkReplInput } = require('../repl/input-check') as typeof import('../repl/input-check');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { flushCompileCache } = require('../engine/node-internals') as typeof import('../engine/node-internals');

let checker: ProgramChecker | undefined;

/** The one JavaScript-compiler checker of this service, shared by the pipeline's and the REPL's requests. */
function getChecker(): ProgramChecker {
  checker ??= new JsChecker(data.root, data.tsconfig, {
    assumeDirectOnly: data.assumeDirectOnly,
    allowMissingConfig: true,
    stateFile: data.stateFile,
  });
  return checker;
}

// While the native thread builds its program, make the JavaScript compiler ready to transpile and to
// compare declarations: the tsconfig parsed, and both emitters compiled (a first call is several
// times slower than the next).
if (native) {
  try {
    const c = getChecker();
    c.transpile('__warm__.ts', 'export const warm: number = 1;\n');
    const warm = c.pathOf('__warm__.ts');
    c.declarationsDiffer(new Map([[warm, 'export const w: number = 1;\n']]), new Map([[warm, 'export const w: number = 2;\n']]));
  } catch {
    // Reported by the request that needs it.
  }
}

async function handle(msg: ServiceRequest): Promise<void> {
  if (msg.kind === 'repl') {
    // The REPL's checks need the JavaScript compiler's program. Under 'auto' the service then holds
    // that one program only: its patch checks move to the JavaScript compiler too, for the rest of
    // this process's life (a forced 'native' keeps both programs).
    if (engine === 'auto' && nativeOff === undefined) nativeOffBecause(REPL_NOTE);
    try {
      post({ id: msg.id, type: 'repl', diagnostics: checkReplInput(getChecker(), msg) });
    } catch (err) {
      post({ id: msg.id, type: 'error', code: 'LP_ERR_INTERNAL', message: `the REPL type checker failed: ${message(err)}` });
    }
    return;
  }
  await handleProgram(msg);
}

/** One whole-program check on the chosen compiler. */
async function checkProgram(req: CheckerRequest, onProgress: (p: CheckProgress) => void): Promise<ProgramCheckResult> {
  startNative();
  if (engine === 'native' && nativeOff !== undefined) throw new LivepatchError('LP_ERR_INTERNAL', nativeOff);
  if (native) {
    const result = await native.check(req.overlay, onProgress);
    if (typeof result !== 'string') return result;
    nativeOffBecause(result);
    if (engine === 'native') throw new LivepatchError('LP_ERR_INTERNAL', result);
  }
  return getChecker().check(new Map(req.overlay), onProgress);
}

async function handleProgram(req: CheckerRequest): Promise<void> {
  try {
    // At most a few progress messages a second (a cold check walks hundreds of files), each phase's
    // start and end always, and never the same figures twice (the builder reports library files too).
    let last = 0;
    let sent = '';
    const check = await checkProgram(req, (p) => {
      const now = Date.now();
      const key = `${p.phase}:${p.done}/${p.total}`;
      if (key === sent || (now - last < 200 && p.done !== 0 && p.done !== p.total)) return;
      last = now;
      sent = key;
      post({ id: req.id, type: 'progress', progress: p });
    });
    const c = getChecker();
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
    post({
      id: req.id,
      type: 'result',
      check,
      js,
      verifyJs,
      transpileDiagnostics,
      ...(nativeOff !== undefined && engine === 'auto' ? { engineNote: nativeOff } : {}),
    });
    // After the answer: the next cold start (after idle or a host restart) begins from this state,
    // and loads the compiler from the code cache written now (not only at exit, which an idle stop's
    // SIGTERM may cut short).
    if (check.engine === 'typescript') c.saveState();
    flushCompileCache();
  } catch (err) {
    const e = err instanceof LivepatchError ? err : new LivepatchError('LP_ERR_INTERNAL', `checker failed: ${message(err)}`);
    post({ id: req.id, type: 'error', code: e.code, message: e.message });
  }
}

// One request at a time, in the order they came (a check may wait on the native thread).
let queue: Promise<void> = Promise.resolve();
process.on('message', (msg: ServiceRequest) => {
  queue = queue.then(() => handle(msg)).catch(() => undefined);
});
// The host went away (or stopped us): nothing is left to check for.
process.on('disconnect', () => process.exit(0));
// Stopped when idle: exit through process.exit, which also stops the native compiler's process.
process.on('SIGTERM', () => process.exit(0));
