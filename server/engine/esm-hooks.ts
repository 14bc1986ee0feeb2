/**
 * Module customization hooks (registered with `module.register`, run on Node's loader thread) that
 * make the app's ES modules live: each ES module under the project root (not node_modules, not
 * livepatch itself) is instrumented as it loads (esm.ts), and the virtual `livepatch-ctl:` module it
 * imports is served from here. Anything else passes through untouched. A module we cannot instrument
 * loads as it is and is reported to the engine (through the port given at registration) as not live.
 */
import type { MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { CTL_SPECIFIER, ctlModuleSource, instrumentDeployed } from './esm';
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
}

let mapper: ModuleMapper | undefined;
let port: MessagePort | undefined;
/** URL → slot keys of modules instrumented and whose cell module has not been loaded yet. */
const keysOf = new Map<string, string[]>();

export function initialize(data: EsmHookData): void {
  mapper = new ModuleMapper(data.root);
  port = data.port;
}

type Next<C, R> = (specifier: string, context: C) => Promise<R>;
interface ResolveResult {
  url: string;
  format?: string | null;
  shortCircuit?: boolean;
}
interface LoadResult {
  format: string;
  source?: string | ArrayBuffer | ArrayBufferView | null;
  shortCircuit?: boolean;
}

export async function resolve(specifier: string, context: object, next: Next<object, ResolveResult>): Promise<ResolveResult> {
  if (specifier.startsWith(CTL_SPECIFIER)) return { url: specifier, format: 'module', shortCircuit: true };
  return next(specifier, context);
}

function report(file: string, reason: string): void {
  try {
    port?.postMessage({ file, reason } satisfies EsmNotLive);
  } catch {
    // The engine is gone: nothing to tell.
  }
}

export async function load(url: string, context: { format?: string | null }, next: Next<object, LoadResult>): Promise<LoadResult> {
  if (url.startsWith(CTL_SPECIFIER)) {
    const target = url.slice(CTL_SPECIFIER.length);
    const keys = keysOf.get(target) ?? [];
    keysOf.delete(target);
    return { format: 'module', source: ctlModuleSource(target, keys), shortCircuit: true };
  }
  const r = await next(url, context);
  if (r.format !== 'module' || !url.startsWith('file:') || r.source == null) return r;
  let file: string;
  try {
    file = fileURLToPath(url);
  } catch {
    return r;
  }
  if (!mapper?.inScope(file)) return r;
  const text = typeof r.source === 'string' ? r.source : Buffer.from(r.source as ArrayBuffer).toString('utf8');
  try {
    const { code, keys } = instrumentDeployed(text, url);
    keysOf.set(url, keys);
    return { ...r, source: code };
  } catch (e) {
    report(file, `its JavaScript could not be analysed (${(e as Error)?.message ?? String(e)})`);
    return r;
  }
}
