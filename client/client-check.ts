/**
 * Type-checking a patch on this machine against an agent's live program (`--check-here`), for hosts
 * that run without TypeScript sources (a build manifest only) or whose memory should not hold a
 * checker. The program is the local checkout (it must be at the deployed commit) overlaid with the
 * live sources of modules patched since deploy, fetched from the agent (`versions`, `source`). Every
 * live module's text is verified by hash against what the agent runs before any check: a checkout
 * that differs is LP_ERR_PATCH_CONFLICT. A passing check yields the patch set with `compiled`: the
 * JavaScript of each patched module (and of the verify module) in the format Node loads it in, and
 * the hashes of the program checked against, which the agent verifies again before it stages.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import type { AgentClient } from './connection';
import { LivepatchError, type CheckResult, type ClientCompiled, type Diagnostic, type PatchSet } from '../shared';

/** Largest live source fetched or checkout file read (same as the agent's per-source limit). */
const MAX_TEXT_BYTES = 16 * 1024 * 1024;
const TS_ID = /\.(ts|tsx|mts|cts)$/;

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The outcome: the client's check result and, when it passed, the set to send. */
export interface ClientCheck {
  result: CheckResult;
  /** The patch set with `compiled` (only when `result.ok`). */
  patch?: PatchSet;
  /** Live modules patched since deploy whose sources were fetched into the overlay. */
  overlaid: string[];
}

function readText(file: string): string | undefined {
  try {
    if (statSync(file).size > MAX_TEXT_BYTES) return undefined;
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Check `patch` here against the live program of the agent `client` talks to; `checkout` is the project root. */
export async function checkOnClient(client: AgentClient, patch: PatchSet, checkout: string): Promise<ClientCheck> {
  // Loaded here, not at start-up: it brings in the TypeScript compiler.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const tc = require('../shared/typecheck') as typeof import('../shared/typecheck');
  const root = resolve(checkout);
  if (!existsSync(join(root, 'tsconfig.json'))) {
    throw new LivepatchError(
      'LP_ERR_CLI_USAGE',
      `no tsconfig.json in ${root}: --check-here checks against a checkout of the deployed commit; pass --checkout DIR`,
    );
  }
  const started = Date.now();
  const versions = await client.request('versions', {});
  const overlay = new Map<string, string>();
  const overlaid: string[] = [];
  const conflicts: { module: string; expected: string | null; actual: string | null }[] = [];
  const against: Record<string, string> = {};
  for (const v of versions) {
    if (!TS_ID.test(v.module) || Object.prototype.hasOwnProperty.call(patch.files, v.module)) continue;
    const file = join(root, ...v.module.split('/'));
    let text: string | undefined;
    if (v.version > 1 || v.generation > 1) {
      // Patched (or added) since deploy: the live source is the agent's, not the checkout's.
      const s = await client.request('source', { module: v.module });
      text = s.source;
      overlay.set(file, text);
      overlaid.push(v.module);
    } else {
      text = readText(file);
    }
    const mine = text === undefined ? null : sha256(text);
    if (mine !== v.hash) conflicts.push({ module: v.module, expected: mine, actual: v.hash });
    else against[v.module] = mine;
  }
  if (conflicts.length > 0) {
    const first = conflicts[0]!;
    const what =
      first.expected === null
        ? `${first.module} is not in the checkout`
        : `${first.module} differs (checkout ${first.expected.slice(0, 12)}, live ${first.actual?.slice(0, 12)})`;
    throw new LivepatchError(
      'LP_ERR_PATCH_CONFLICT',
      `the checkout at ${root} does not match the live program (${conflicts.length} module(s)): ${what}; check out the deployed commit`,
      { conflicts: conflicts.slice(0, 100) },
    );
  }

  const checker = new tc.ProgramChecker(root);
  const full = new Map(overlay);
  for (const [id, text] of Object.entries(patch.files)) full.set(checker.pathOf(id), text);
  const r = checker.check(full);
  const diagnostics: Diagnostic[] = [...r.diagnostics];
  const js: Record<string, string> = {};
  let verifyJs: string | undefined;
  if (!r.hasErrors) {
    for (const [id, text] of Object.entries(patch.files)) {
      const out = checker.transpile(id, text);
      js[id] = out.js;
      diagnostics.push(...out.diagnostics);
    }
    if (patch.verify !== undefined) {
      const out = checker.transpile('__verify__.ts', patch.verify);
      verifyJs = out.js;
      diagnostics.push(...out.diagnostics);
    }
  }
  const ok = !diagnostics.some((d) => d.category === 'error');
  const result: CheckResult = { ok, diagnostics, checkedFiles: r.checked, durationMs: Date.now() - started, checkedBy: 'client' };
  if (!ok) return { result, overlaid };

  // The rest of the program the check saw: the agent verifies these against its build manifest.
  for (const f of checker.fileNames) {
    const rel = relative(root, f);
    if (rel.startsWith('..') || rel.includes(`node_modules${sep}`) || /\.d\.[cm]?ts$/.test(rel) || !TS_ID.test(rel)) continue;
    const id = rel.split(sep).join('/');
    if (Object.prototype.hasOwnProperty.call(patch.files, id) || against[id] !== undefined) continue;
    const text = full.get(f) ?? readText(f);
    if (text !== undefined) against[id] = sha256(text);
  }
  const compiled: ClientCompiled = { js, ...(verifyJs !== undefined ? { verifyJs } : {}), against, typescript: tc.TYPESCRIPT_VERSION };
  return { result, patch: { ...patch, compiled }, overlaid };
}
