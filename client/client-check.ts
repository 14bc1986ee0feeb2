/**
 * Type-checking a patch on this machine against an agent's live program (`--check-here`), for hosts
 * that run without TypeScript sources (a build manifest only) or whose memory should not hold a
 * checker. The program is the local checkout (it must be at the deployed commit) overlaid with the
 * live sources of modules patched since deploy, fetched from the agent (`versions`, `source`). Every
 * live module's text is verified by hash against what the agent runs before any check: a checkout
 * that differs is LP_ERR_PATCH_CONFLICT. A passing check yields the patch set with `compiled`: the
 * JavaScript of each patched module (and of the verify module) in the format Node loads it in, and
 * the hashes of the program checked against, which the agent verifies again before it stages.
 *
 * A set signed with its JavaScript (`livepatch sign --compile`) keeps that JavaScript: the host must
 * run exactly the signed bytes. The check here emits the JavaScript as well and requires it to be
 * byte-identical to the signed one (else LP_ERR_PATCH_JS_MISMATCH, nothing sent), so the sources it
 * type-checked are the ones the signed JavaScript was compiled from.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import type { AgentClient } from './connection';
import { LivepatchError, type CheckResult, type ClientCompiled, type Diagnostic, type PatchSet } from '../shared';
import { sha256 } from '../shared/hash';
import type { ProgramChecker } from '../shared/typecheck';
import { checkLocally } from './local-check';

/** Largest live source fetched or checkout file read (same as the agent's per-source limit). */
const MAX_TEXT_BYTES = 16 * 1024 * 1024;
const TS_ID = /\.(ts|tsx|mts|cts)$/;

/** The module id the verify module is transpiled as (its format follows the project's root). */
const VERIFY_ID = '__verify__.ts';

/** The JavaScript of a patch set's modules and verify module, and the transpiler's diagnostics. */
export interface EmittedJs {
  js: Record<string, string>;
  verifyJs?: string;
  diagnostics: Diagnostic[];
}

/**
 * Transpile each patched module (and the verify module) with `checker`'s project options, to the format
 * Node loads it in: the one emit used both by the client's check and by `livepatch sign --compile`.
 */
export function emitPatchJs(checker: ProgramChecker, patch: PatchSet): EmittedJs {
  const js: Record<string, string> = {};
  const diagnostics: Diagnostic[] = [];
  for (const [id, text] of Object.entries(patch.files)) {
    const out = checker.transpile(id, text);
    js[id] = out.js;
    diagnostics.push(...out.diagnostics);
  }
  if (patch.verify === undefined) return { js, diagnostics };
  const out = checker.transpile(VERIFY_ID, patch.verify);
  diagnostics.push(...out.diagnostics);
  return { js, verifyJs: out.js, diagnostics };
}

/**
 * The signed JavaScript of `patch` when it matches `mine` byte for byte; LP_ERR_PATCH_JS_MISMATCH naming
 * the first module that differs otherwise.
 */
function keepSignedJs(patch: PatchSet, mine: EmittedJs, typescript: string): Pick<ClientCompiled, 'js' | 'verifyJs'> {
  const signed = patch.compiled!;
  const ids = [...new Set([...Object.keys(mine.js), ...Object.keys(signed.js)])].sort();
  const differs = ids.find((id) => !Object.prototype.hasOwnProperty.call(signed.js, id) || signed.js[id] !== mine.js[id]);
  const verifyDiffers = signed.verifyJs !== mine.verifyJs;
  if (differs !== undefined || verifyDiffers) {
    const what = differs !== undefined ? differs : 'the verify module';
    throw new LivepatchError(
      'LP_ERR_PATCH_JS_MISMATCH',
      `the patch set's compiled JavaScript for ${what} is not what its source compiles to here (TypeScript ${typescript}` +
        `${signed.typescript !== undefined ? `, signed with ${signed.typescript}` : ''}): sign and check with the same TypeScript ` +
        'version and tsconfig, or the set was changed after signing; nothing was sent',
      { module: what },
    );
  }
  return { js: signed.js, ...(signed.verifyJs !== undefined ? { verifyJs: signed.verifyJs } : {}) };
}

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
  const r = checkLocally(root, full, () => checker);
  const diagnostics: Diagnostic[] = [...r.diagnostics];
  const emitted = r.hasErrors ? undefined : emitPatchJs(checker, patch);
  if (emitted) diagnostics.push(...emitted.diagnostics);
  const ok = !diagnostics.some((d) => d.category === 'error');
  const result: CheckResult = {
    ok,
    diagnostics,
    checkedFiles: r.checked,
    durationMs: Date.now() - started,
    checkedBy: 'client',
    engine: r.engine,
    ...(r.engineNote !== undefined ? { engineNote: r.engineNote } : {}),
  };
  if (!ok || !emitted) return { result, overlaid };
  // A set signed with its JavaScript is sent with exactly that JavaScript.
  const run = patch.compiled ? keepSignedJs(patch, emitted, tc.TYPESCRIPT_VERSION) : { js: emitted.js, verifyJs: emitted.verifyJs };

  // The rest of the program the check saw: the agent verifies these against its build manifest.
  for (const f of checker.fileNames) {
    const rel = relative(root, f);
    if (rel.startsWith('..') || rel.includes(`node_modules${sep}`) || /\.d\.[cm]?ts$/.test(rel) || !TS_ID.test(rel)) continue;
    const id = rel.split(sep).join('/');
    if (Object.prototype.hasOwnProperty.call(patch.files, id) || against[id] !== undefined) continue;
    const text = full.get(f) ?? readText(f);
    if (text !== undefined) against[id] = sha256(text);
  }
  const compiled: ClientCompiled = {
    js: run.js,
    ...(run.verifyJs !== undefined ? { verifyJs: run.verifyJs } : {}),
    against,
    typescript: tc.TYPESCRIPT_VERSION,
  };
  return { result, patch: { ...patch, compiled }, overlaid };
}
