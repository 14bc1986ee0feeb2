/**
 * Patch sets and diagnostics: the payload of check/stage/apply and what comes back.
 *
 * A patch set carries full new TypeScript sources keyed by module id (the POSIX path of the source
 * relative to the project root, e.g. `src/rates.ts`). New modules are simply ids that are not live yet.
 */

export interface PatchSet {
  /** Optional idempotency key: re-sending an id that was already committed is refused (LP_ERR_PATCH_DUPLICATE). */
  id?: string;
  message?: string;
  /** module id → full new TypeScript source. */
  files: Record<string, string>;
  /** module id → sha256 hex of the source the patch was written against; a mismatch is a conflict. */
  base?: Record<string, string>;
  /**
   * TypeScript source of a verify module. It is evaluated against the staged generation (pinned to it)
   * after the new modules load; every exported function is called and awaited. A throw, rejection or
   * timeout vetoes the commit.
   */
  verify?: string;
  /**
   * Detached signature over the canonical encoding of every other field (shared/signing.ts), made by
   * `livepatch sign`. An agent started with LIVEPATCH_TRUSTED_KEYS accepts only sets signed by a key
   * it trusts. With `format: 'livepatch-patch-set/2'` (`livepatch sign --compile`) it also covers
   * `compiled.js` and `compiled.verifyJs`.
   */
  signature?: PatchSignature;
  /**
   * The JavaScript to run and (set by a client that type-checked the patch itself, `--check-here`) the
   * hashes of the program it checked against. A host without TypeScript sources (build manifest only)
   * needs it with `against`; a host with sources checks the patch itself and ignores it. `livepatch sign
   * --compile` writes `js`/`verifyJs` (no `against`) and signs them; `against` is never signed.
   */
  compiled?: ClientCompiled;
}

/** A client's check of a patch set: what it produced and what it checked against. */
export interface ClientCompiled {
  /** module id → JavaScript transpiled from `files[id]`, in the format Node loads that module in. */
  js: Record<string, string>;
  /** The verify module's JavaScript (present exactly when `verify` is). */
  verifyJs?: string;
  /**
   * module id → sha256 of the source the client type-checked the patch against, for every module of
   * its program except the patched ones. The host refuses the set (LP_ERR_PATCH_CONFLICT) unless each
   * matches what it runs (live version, else the build manifest) and every live module is listed.
   * Absent in a set written by `livepatch sign --compile` (no client check yet): a host without sources
   * refuses such a set (LP_ERR_PATCH_NO_SOURCES) until a client checks it with `--check-here`.
   */
  against?: Record<string, string>;
  /** The TypeScript version the client checked with (informational). */
  typescript?: string;
}

/** Ed25519 signature of a patch set: the signer's key id and the signature (base64, 64 bytes). */
export interface PatchSignature {
  alg: 'ed25519';
  keyId: string;
  value: string;
  /**
   * The canonical encoding signed (shared/signing.ts): absent for `livepatch-patch-set/1` (sources,
   * bases, verify, id, message), `livepatch-patch-set/2` when the compiled JavaScript is covered too.
   */
  format?: 'livepatch-patch-set/2';
}

export type DiagnosticCategory = 'error' | 'warning' | 'suggestion' | 'message';

export interface Diagnostic {
  /** Module id (path relative to the project root), or undefined for global diagnostics. */
  file?: string;
  line?: number; // 1-based
  column?: number; // 1-based
  code: number; // TS code, e.g. 2554 (0 for livepatch's own diagnostics)
  /** livepatch's own diagnostics (unreachable changes, top-level effects) carry their error code instead. */
  lpCode?: string;
  category: DiagnosticCategory;
  message: string;
}

/** Diagnostics in a stable order: by file, then line, then column (global ones first). */
export function sortDiagnostics(ds: Diagnostic[]): Diagnostic[] {
  return ds.sort(
    (a, b) => (a.file ?? '').localeCompare(b.file ?? '') || (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0),
  );
}

/** tsc's one-line form: `src/quote.ts(12,5): error TS2554: Expected 2 arguments, but got 1.` */
export function formatDiagnostic(d: Diagnostic): string {
  const where = d.file ? (d.line !== undefined ? `${d.file}(${d.line},${d.column ?? 1}): ` : `${d.file}: `) : '';
  return `${where}${d.category} ${d.lpCode ?? `TS${d.code}`}: ${d.message}`;
}

export interface ModuleVersionInfo {
  module: string;
  version: number;
  /** The generation that introduced this version. */
  generation: number;
  hash: string;
  patched: boolean;
}

export interface GenerationSummary {
  generation: number;
  kind: 'deploy' | 'patch' | 'rollback';
  time: string; // ISO
  who?: string;
  message?: string;
  patchId?: string;
  /** Signed patch sets: the key that signed it (its name in the agent's trusted-keys file, and id). */
  signer?: { keyId: string; name?: string };
  /** Patches: which side type-checked it, the host or a client (`--check-here`). */
  checkedBy?: 'host' | 'client';
  /** Modules whose version changed in this generation. */
  changed: string[];
  /** For rollbacks: the generation whose versions were restored. */
  rollbackTo?: number;
  live: boolean;
  current: boolean;
  inflight: number;
}
