/**
 * Module customization hooks that make the app's ES modules live: each ES module under the project
 * root (not node_modules, not livepatch itself) is instrumented as it loads (esm.ts), and the virtual
 * `?livepatch-ctl` module it imports is served from here. Anything else passes through untouched. A
 * module we cannot instrument loads as it is and is reported to the engine as not live.
 *
 * Two registrations share the logic: synchronous hooks in the app's own thread
 * (`module.registerHooks`, Node ≥ 22.15; they also cover `require()` of ES modules), and on older
 * Node the asynchronous hooks of `module.register`, which run on Node's loader thread and report
 * through a message port.
 */
import type { MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { CTL_QUERY, ctlModuleSource, instrumentDeployed } from './esm';
import { notInstrumented } from './instrument';
import { ModuleMapper } from './module-id';

/** What the engine passes at registration. */
export interface EsmHookData {
  readonly root: string;
  readonly port?: MessagePort;
}

/** A report to the engine: a file of the app that loads but is not live. */
export interface EsmNotLive {
  readonly file: string;
  readonly reason: string;
  readonly kind: string;
}

let mapper: ModuleMapper | undefined;
let tell: (file: string, reason: string, kind: string) => void = () => undefined;
/** URL → slot keys of modules instrumented and whose cell module has not been loaded yet. */
const keysOf = new Map<string, string[]>();

/** Hooks run in the engine's thread (`module.registerHooks`): reports go straight to `report`. */
export function initializeInThread(root: string, report: (file: string, reason: string, kind: string) => void): void {
  mapper = new ModuleMapper(root);
  tell = report;
}

/** Hooks run on the loader thread (`module.register`): reports go through the port. */
export function initialize(data: EsmHookData): void {
  mapper = new ModuleMapper(data.root);
  const port = data.port;
  tell = (file, reason, kind) => {
    try {
      port?.postMessage({ file, reason, kind } satisfies EsmNotLive);
    } catch {
      // The engine is gone: nothing to tell.
    }
  };
}

interface LoadResult {
  format?: string | null;
  source?: string | ArrayBuffer | ArrayBufferView | null;
  shortCircuit?: boolean;
}

/** The virtual cell module's source, or undefined for any other URL. */
function loadCtl(url: string): LoadResult | undefined {
  if (!url.endsWith(CTL_QUERY) || !url.startsWith('file:')) return undefined;
  const target = url.slice(0, -CTL_QUERY.length);
  const keys = keysOf.get(target) ?? [];
  keysOf.delete(target);
  return { format: 'module', source: ctlModuleSource(target, keys), shortCircuit: true };
}

/** The loaded module `r`, instrumented when it is one of the app's ES modules. */
function transform(url: string, r: LoadResult): LoadResult {
  if (!url.startsWith('file:') || r.source == null) return r;
  if (r.format !== 'module' && r.format !== 'module-typescript') return r;
  let file: string;
  try {
    file = fileURLToPath(url);
  } catch {
    return r;
  }
  if (!mapper?.inScope(file)) return r;
  if (r.format === 'module-typescript') {
    tell(
      file,
      "TypeScript run by Node's own type stripping; compile it with tsc (or run it with ts-node) to make it live",
      "TypeScript run by Node's type stripping",
    );
    return r;
  }
  const text = typeof r.source === 'string' ? r.source : Buffer.from(r.source as ArrayBuffer).toString('utf8');
  const skip = notInstrumented(text);
  if (skip) {
    tell(file, skip.reason, skip.kind);
    return r;
  }
  try {
    const { code, keys } = instrumentDeployed(text, url);
    keysOf.set(url, keys);
    return { ...r, source: code };
  } catch (e) {
    tell(file, `its JavaScript could not be analysed (${(e as Error)?.message ?? String(e)})`, 'JavaScript the analyser could not parse');
    return r;
  }
}

type Next<R> = (specifier: string, context?: object) => R;

export function loadSync(url: string, context: object, next: Next<LoadResult>): LoadResult {
  return loadCtl(url) ?? transform(url, next(url, context));
}

export async function load(url: string, context: object, next: Next<Promise<LoadResult>>): Promise<LoadResult> {
  return loadCtl(url) ?? transform(url, await next(url, context));
}
