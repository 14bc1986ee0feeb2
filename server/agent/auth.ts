/**
 * The agent half of the handshake (shared/auth.ts), the tokens store and per-address lockout.
 *
 * The tokens file is re-read when its mtime changes, so `livepatch token create/revoke` takes effect
 * without restarting the host. An unknown token id costs the same work as a known one (a proof is
 * checked against a throwaway key), so the reply time does not reveal which ids exist.
 */
import { statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { authMessageSchema } from '../../shared/messages';
import { verifyProof, type Role } from '../../shared/auth';
import { readTokensFile, type TokenEntry } from '../../shared/tokens';
import { PROTOCOL_VERSION } from '../../shared/version';
import { parseFrame } from '../../shared/messages';
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

/** Failed-handshake accounting per remote address. */
export class Lockout {
  #opts: LockoutOptions;
  #failures = new Map<string, number[]>();
  #lockedUntil = new Map<string, number>();

  constructor(opts: LockoutOptions) {
    this.#opts = opts;
  }

  /** Milliseconds until `addr` may try again (0 = not locked). */
  lockedFor(addr: string, now = Date.now()): number {
    const until = this.#lockedUntil.get(addr);
    if (until === undefined) return 0;
    if (until <= now) {
      this.#lockedUntil.delete(addr);
      return 0;
    }
    return until - now;
  }

  /** Record a failure; returns true when this failure locked the address. */
  fail(addr: string, now = Date.now()): boolean {
    const recent = (this.#failures.get(addr) ?? []).filter((t) => now - t < this.#opts.windowMs);
    recent.push(now);
    if (recent.length >= this.#opts.maxFailures) {
      this.#failures.delete(addr);
      this.#lockedUntil.set(addr, now + this.#opts.lockMs);
      return true;
    }
    this.#failures.set(addr, recent);
    // Bound memory under a spray of addresses: forget the oldest entries.
    if (this.#failures.size > 10_000) this.#failures.delete(this.#failures.keys().next().value as string);
    return false;
  }

  succeed(addr: string): void {
    this.#failures.delete(addr);
  }
}

export type HandshakeOutcome =
  | { ok: true; principal: Principal }
  | { ok: false; reason: 'protocol'; message: string }
  | { ok: false; reason: 'denied'; message: string; tokenId?: string };

const DUMMY_KEY = randomBytes(32).toString('hex');

/** Check one `auth` frame against the server nonce sent in `hello`. Pure apart from the token lookup. */
export function checkAuthFrame(text: string, serverNonce: string, tokens: TokenStore): HandshakeOutcome {
  const parsed = parseFrame(text, 4);
  if (!parsed.ok) return { ok: false, reason: 'denied', message: `bad auth message: ${parsed.reason}` };
  const msg = authMessageSchema.safeParse(parsed.value);
  if (!msg.success) return { ok: false, reason: 'denied', message: 'expected an auth message' };
  const { protocol, tokenId, clientNonce, proof } = msg.data;
  if (protocol !== PROTOCOL_VERSION) return { ok: false, reason: 'protocol', message: `agent speaks protocol ${PROTOCOL_VERSION}, client sent ${protocol}` };
  const entry = tokens.lookup(tokenId);
  const good = verifyProof(entry?.storedKey ?? DUMMY_KEY, tokenId, serverNonce, clientNonce, proof);
  if (!entry || !good) return { ok: false, reason: 'denied', message: 'unknown or wrong token', tokenId };
  return { ok: true, principal: { name: entry.name, role: entry.role, tokenId } };
}
