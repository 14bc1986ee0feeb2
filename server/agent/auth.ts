/**
 * The agent half of the handshake (shared/auth.ts), the tokens store and the lockout of token ids
 * per address.
 *
 * The tokens file is re-read when its mtime changes, so `livepatch token create/revoke` takes effect
 * without restarting the host. An unknown token id costs the same work as a known one (a proof is
 * checked against a throwaway key), so the reply time does not reveal which ids exist.
 */
import { statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { authMessageSchema, parseFrame, type AuthMessage } from '../../shared/messages';
import { verifyProof, type Role } from '../../shared/auth';
import { readTokensFile, type TokenEntry } from '../../shared/tokens';
import { PROTOCOL_VERSION } from '../../shared/version';
import type { LockoutOptions } from './options';

export interface Principal {
  name: string;
  role: Role;
  tokenId: string;
}

/** Token entries by id, reloaded when the file changes. */
export class TokenStore {
  readonly path: string;
  #byId = new Map<string, TokenEntry>();
  #mtimeMs = -1;
  #size = -1;

  constructor(path: string) {
    this.path = path;
    this.#load(true);
  }

  /** Reload if the file changed. A broken file on reload keeps the previous tokens (and says so). */
  #load(first = false): void {
    const st = statSync(this.path, { throwIfNoEntry: false });
    if (!st) {
      if (first) throw new Error(`cannot read tokens file ${this.path}: ENOENT`);
      return;
    }
    if (st.mtimeMs === this.#mtimeMs && st.size === this.#size) return;
    try {
      const file = readTokensFile(this.path);
      this.#byId = new Map(file.tokens.map((t) => [t.id, t]));
      this.#mtimeMs = st.mtimeMs;
      this.#size = st.size;
    } catch (e) {
      if (first) throw e;
      process.stderr.write(`livepatch: keeping the previous tokens: ${(e as Error).message}\n`);
      this.#mtimeMs = st.mtimeMs;
      this.#size = st.size;
    }
  }

  get count(): number {
    return this.#byId.size;
  }

  lookup(id: string): TokenEntry | undefined {
    try {
      this.#load();
    } catch {
      /* keep the tokens we have */
    }
    return this.#byId.get(id);
  }
}

/**
 * Failed credential proofs per (token id, remote address). Only a well-formed `auth` frame whose proof
 * does not verify counts: junk, silence and protocol mismatches are closed without touching it, so
 * they cannot lock anyone out. A locked key refuses that token id from that address, even with the
 * right secret; other tokens from the same address, and the same token from elsewhere, are unaffected.
 */
export class Lockout {
  #opts: LockoutOptions;
  #failures = new Map<string, number[]>();
  #lockedUntil = new Map<string, number>();

  constructor(opts: LockoutOptions) {
    this.#opts = opts;
  }

  static key(tokenId: string, addr: string): string {
    return `${tokenId}@${addr}`;
  }

  /** Milliseconds until `tokenId` may try again from `addr` (0 = not locked). */
  lockedFor(tokenId: string, addr: string, now = Date.now()): number {
    const key = Lockout.key(tokenId, addr);
    const until = this.#lockedUntil.get(key);
    if (until === undefined) return 0;
    if (until <= now) {
      this.#lockedUntil.delete(key);
      return 0;
    }
    return until - now;
  }

  /** Record a failed proof; returns true when this failure locked the key. */
  fail(tokenId: string, addr: string, now = Date.now()): boolean {
    const key = Lockout.key(tokenId, addr);
    const recent = (this.#failures.get(key) ?? []).filter((t) => now - t < this.#opts.windowMs);
    recent.push(now);
    this.#failures.delete(key);
    if (recent.length >= this.#opts.maxFailures) {
      this.#lockedUntil.delete(key);
      this.#lockedUntil.set(key, now + this.#opts.lockMs);
      // Bounded under a spray of token ids and addresses: expired locks go first, then the oldest.
      if (this.#lockedUntil.size > 10_000) {
        for (const [k, until] of this.#lockedUntil) if (until <= now) this.#lockedUntil.delete(k);
        if (this.#lockedUntil.size > 10_000) this.#lockedUntil.delete(this.#lockedUntil.keys().next().value as string);
      }
      return true;
    }
    this.#failures.set(key, recent);
    // Bound memory under a spray of keys: forget the oldest entries.
    if (this.#failures.size > 10_000) this.#failures.delete(this.#failures.keys().next().value as string);
    return false;
  }

  succeed(tokenId: string, addr: string): void {
    this.#failures.delete(Lockout.key(tokenId, addr));
  }
}

/** A first frame that is a well-formed `auth` message of our protocol version, or why it is not. */
export type AuthParse =
  { ok: true; msg: AuthMessage } | { ok: false; reason: 'junk'; message: string } | { ok: false; reason: 'protocol'; message: string };

const DUMMY_KEY = randomBytes(32).toString('hex');

/** Parse the first frame of a connection. `null` stands for a binary frame. */
export function parseAuthFrame(text: string | null): AuthParse {
  if (text === null) return { ok: false, reason: 'junk', message: 'binary auth frame' };
  const parsed = parseFrame(text, 4);
  if (!parsed.ok) return { ok: false, reason: 'junk', message: `bad auth message: ${parsed.reason}` };
  const msg = authMessageSchema.safeParse(parsed.value);
  if (!msg.success) return { ok: false, reason: 'junk', message: 'expected an auth message' };
  if (msg.data.protocol !== PROTOCOL_VERSION)
    return { ok: false, reason: 'protocol', message: `agent speaks protocol ${PROTOCOL_VERSION}, client sent ${msg.data.protocol}` };
  return { ok: true, msg: msg.data };
}

/**
 * Check the proof of a parsed `auth` message against the server nonce sent in `hello`. An unknown
 * token id costs the same work as a known one. Pure apart from the token lookup.
 */
export function verifyAuth(msg: AuthMessage, serverNonce: string, tokens: TokenStore): Principal | undefined {
  const { tokenId, clientNonce, proof } = msg;
  const entry = tokens.lookup(tokenId);
  const good = verifyProof(entry?.storedKey ?? DUMMY_KEY, tokenId, serverNonce, clientNonce, proof);
  if (!entry || !good) return undefined;
  return { name: entry.name, role: entry.role, tokenId };
}
