/**
 * Token format and the challenge-response handshake, used by both sides.
 *
 * A token is `lp_<id>_<secret>`: `id` is 8 hex characters naming the token-file entry, `secret` is 32
 * random bytes in base64url. The agent never stores the secret, only `storedKey = sha256(clientKey)`
 * with `clientKey = HMAC-SHA256(secret, "livepatch client key")` (the SCRAM construction, RFC 5802).
 *
 * Handshake: the agent sends a fresh `serverNonce`; the client picks a `clientNonce` and sends
 * `proof = clientKey XOR HMAC(storedKey, authMessage)`, where authMessage binds both nonces and the
 * token id. The agent recovers `clientKey' = proof XOR HMAC(storedKey, authMessage)` and accepts when
 * `sha256(clientKey')` equals `storedKey` (constant-time). Consequences:
 * - a captured handshake cannot be replayed: the next connection has another serverNonce;
 * - a stolen tokens file does not let anyone log in: it holds storedKey, not clientKey.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const ROLES = ['read', 'patch', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** True when `have` grants at least `need`. */
export function roleAllows(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export interface ParsedToken {
  id: string;
  secret: Buffer;
}

const TOKEN_RE = /^lp_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$/;

export function generateToken(): { token: string; id: string; storedKey: string } {
  const id = randomBytes(4).toString('hex');
  const secret = randomBytes(32);
  const token = `lp_${id}_${secret.toString('base64url')}`;
  return { token, id, storedKey: storedKeyOf(secret).toString('hex') };
}

export function parseToken(token: string): ParsedToken | undefined {
  const m = TOKEN_RE.exec(token.trim());
  if (!m) return undefined;
  return { id: m[1]!, secret: Buffer.from(m[2]!, 'base64url') };
}

function clientKeyOf(secret: Buffer): Buffer {
  return createHmac('sha256', secret).update('livepatch client key').digest();
}

export function storedKeyOf(secret: Buffer): Buffer {
  return createHash('sha256').update(clientKeyOf(secret)).digest();
}

export function newNonce(): string {
  return randomBytes(24).toString('base64url');
}

function authMessage(serverNonce: string, clientNonce: string, tokenId: string): string {
  return `livepatch-auth-v1|${serverNonce}|${clientNonce}|${tokenId}`;
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Client side: the proof for one handshake. */
export function computeProof(token: ParsedToken, serverNonce: string, clientNonce: string): string {
  const storedKey = storedKeyOf(token.secret);
  const sig = createHmac('sha256', storedKey)
    .update(authMessage(serverNonce, clientNonce, token.id))
    .digest();
  return xor(clientKeyOf(token.secret), sig).toString('base64url');
}

/** Agent side: constant-time check of a proof against the stored key (hex). */
export function verifyProof(storedKeyHex: string, tokenId: string, serverNonce: string, clientNonce: string, proof: string): boolean {
  const storedKey = Buffer.from(storedKeyHex, 'hex');
  const proofBuf = Buffer.from(proof, 'base64url');
  if (storedKey.length !== 32 || proofBuf.length !== 32) return false;
  const sig = createHmac('sha256', storedKey)
    .update(authMessage(serverNonce, clientNonce, tokenId))
    .digest();
  const candidate = createHash('sha256').update(xor(proofBuf, sig)).digest();
  return timingSafeEqual(candidate, storedKey);
}
