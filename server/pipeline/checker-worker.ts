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
 */
import { setPriority } from 'node:os';
import { LivepatchError } from '../../shared/errors';
import { flushCompileCache } from '../engine/node-internals';
import { ProgramChecker } from '../../shared/typecheck';
import { checkReplInput } from '../repl/input-check';
import type { CheckerRequest, CheckerResponse, CheckerWorkerData, ServiceRequest } from './checker-protocol';

const data = JSON.parse(process.env['LIVEPATCH_CHECKER_CONFIG'] ?? '{}') as CheckerWorkerData;
let checker: ProgramChecker | undefined;

try {
  // Let the host's event loop win the CPU on a busy machine, without starving the check: at nice 5
  // the checker gets about a quarter of a core against one busy process at nice 0 (at nice 10, under
  // 10 %: a check that needs seconds of CPU took minutes on a loaded host, past the REPL's timeout).
  setPriority(5);
} catch {
  // Not permitted: the check just runs at normal priority.
}

function post(msg: CheckerResponse): void {
  process.send?.(msg);
}

/** The one checker of this service, shared by the pipeline's and the REPL's requests. */
function getChecker(): ProgramChecker {
  checker ??= new ProgramChecker(data.root, data.tsconfig, {
    assumeDirectOnly: data.assumeDirectOnly,
    allowMissingConfig: true,
    stateFile: data.stateFile,
  });
  return checker;
}

function handle(msg: ServiceRequest): void {
  if (msg.kind === 'repl') {
    try {
      post({ id: msg.id, type: 'repl', diagnostics: checkReplInput(getChecker(), msg) });
    } catch (err) {
      post({
        id: msg.id,
        type: 'error',
        code: 'LP_ERR_INTERNAL',
        message: `the REPL type checker failed: ${(err as Error)?.message ?? String(err)}`,
      });
    }
    return;
  }
  handleProgram(msg);
}

function handleProgram(req: CheckerRequest): void {
  try {
    const c = getChecker();
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
    // After the answer: the next cold start (after idle or a host restart) begins from this state,
    // and loads the compiler from the code cache written now (not only at exit, which an idle stop's
    // SIGTERM may cut short).
    c.saveState();
    flushCompileCache();
  } catch (err) {
    const e =
      err instanceof LivepatchError
        ? err
        : new LivepatchError('LP_ERR_INTERNAL', `checker failed: ${(err as Error)?.message ?? String(err)}`);
    post({ id: req.id, type: 'error', code: e.code, message: e.message });
  }
}

process.on('message', (msg: ServiceRequest) => handle(msg));
// The host went away (or stopped us): nothing is left to check for.
process.on('disconnect', () => process.exit(0));
