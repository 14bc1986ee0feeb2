/**
 * Signed patch sets: Ed25519 signatures over a canonical encoding of a patch set, key ids, and the
 * trusted-keys file the agent reads (LIVEPATCH_TRUSTED_KEYS).
 *
 * Canonical encoding. The signed bytes are the UTF-8 JSON text of the array
 * `["livepatch-patch-set/1", id|null, message|null, [[module, source]...], [[module, base]...], verify|null]`
 * with the module lists sorted by module id (code-unit order). Strings are encoded by JSON.stringify,
 * which is deterministic; no object key order is involved, so any two encoders agree byte for byte.
 * Every field of the set except the signature and `compiled` is covered: changing one byte of one
 * source, a base, the verify hook, the id or the message invalidates the signature.
 *
 * A set that carries the JavaScript to run (`compiled.js`, `compiled.verifyJs`: `livepatch sign
 * --compile`) is signed over the `/2` encoding, and its signature says so (`format`):
 * `["livepatch-patch-set/2", id|null, message|null, [[module, source]...], [[module, base]...], verify|null,
 *   [[module, js]...], verifyJs|null]`. `compiled.against` (what a client checked against at apply
 * time) and `compiled.typescript` are not covered: the host verifies `against` against what it runs.
 * The domain string differs, so a `/1` signature never verifies as `/2` or the other way round.
 *
 * Key id: the first 16 hex digits of sha256 over the raw 32-byte public key. It names the key; it is
 * not what makes a signature valid (the key in the trusted-keys file is).
 *
 * Trusted-keys file: UTF-8 text, one key per line, `NAME ed25519:BASE64`, where BASE64 is the raw
 * 32-byte public key (the line `livepatch keygen` prints and writes to `<dir>/livepatch-signing.pub`).
 * Blank lines and lines starting with `#` are ignored. NAME: letters, digits, `_ . @ -`, 1 to 100.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as edSign,
  verify as edVerify,
  type KeyObject,
} from 'node:crypto';
import type { PatchSet, PatchSignature } from './patch';

export const SIGNATURE_ALG = 'ed25519';
const DOMAIN_V1 = 'livepatch-patch-set/1';
/** The encoding that also covers the compiled JavaScript (`signature.format`). */
export const SIGNATURE_FORMAT_JS = 'livepatch-patch-set/2';
/** Most keys a trusted-keys file may hold, and its largest size. */
export const MAX_TRUSTED_KEYS = 1000;
export const MAX_TRUSTED_KEYS_BYTES = 256 * 1024;
export const KEY_NAME_RE = /^[A-Za-z0-9_.@-]{1,100}$/;
export const KEY_ID_RE = /^[0-9a-f]{16}$/;

/** Who signed a set, as the agent records it (name from the trusted-keys file; absent for an unknown key). */
export interface Signer {
  keyId: string;
  name?: string;
}

/**
 * The bytes a signature covers (the set's `signature` field is ignored): the `/1` encoding, or with
 * `withJs` the `/2` one, which adds `compiled.js` and `compiled.verifyJs`.
 */
export function canonicalPatchBytes(set: PatchSet, withJs = false): Buffer {
  const sorted = (r: Record<string, string> | undefined) =>
    Object.keys(r ?? {})
      .sort()
      .map((k) => [k, r![k]!]);
  const common = [set.id ?? null, set.message ?? null, sorted(set.files), sorted(set.base), set.verify ?? null];
  const doc = withJs ? [SIGNATURE_FORMAT_JS, ...common, sorted(set.compiled?.js), set.compiled?.verifyJs ?? null] : [DOMAIN_V1, ...common];
  return Buffer.from(JSON.stringify(doc), 'utf8');
}

/** The raw 32-byte Ed25519 public key of a key object. */
export function rawPublicKey(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' }) as { kty?: string; crv?: string; x?: string };
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new Error('not an Ed25519 key');
  return Buffer.from(jwk.x, 'base64url');
}

/** Key id of a raw public key: 16 hex digits of its sha256. */
export function keyIdOf(raw: Buffer): string {
  return createHash('sha256').update(raw).digest('hex').slice(0, 16);
}

/** A raw 32-byte Ed25519 public key → key object. Throws on anything else. */
export function publicKeyFromRaw(raw: Buffer): KeyObject {
  if (raw.length !== 32) throw new Error('an Ed25519 public key is 32 bytes');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

/** `ed25519:BASE64` of a raw public key. */
export function formatPublicKey(raw: Buffer): string {
  return `${SIGNATURE_ALG}:${raw.toString('base64')}`;
}

/** A new key pair: the private key as PKCS#8 PEM, the public key raw, and its id. */
export function generateSigningKey(): { privatePem: string; publicRaw: Buffer; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicRaw = rawPublicKey(publicKey);
  return { privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), publicRaw, keyId: keyIdOf(publicRaw) };
}

/** Load a PEM private key and check it is Ed25519. Throws an Error with a readable message. */
export function loadPrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    throw new Error('not a PEM private key');
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`an Ed25519 key is needed, this is ${key.asymmetricKeyType ?? 'unknown'}`);
  return key;
}

/**
 * The set with a detached signature by `privateKey` (any previous signature replaced). A set carrying
 * compiled JavaScript (`compiled.js`) is signed over the `/2` encoding, which covers that JavaScript.
 */
export function signPatchSet(set: PatchSet, privateKey: KeyObject): PatchSet {
  const { signature: _old, ...unsigned } = set;
  const withJs = unsigned.compiled !== undefined;
  const raw = rawPublicKey(createPublicKey(privateKey));
  const sig = edSign(null, canonicalPatchBytes(unsigned, withJs), privateKey);
  const signature: PatchSignature = {
    alg: SIGNATURE_ALG,
    keyId: keyIdOf(raw),
    value: sig.toString('base64'),
    ...(withJs ? { format: SIGNATURE_FORMAT_JS } : {}),
  };
  return { ...unsigned, signature };
}

export interface TrustedKey {
  name: string;
  keyId: string;
  key: KeyObject;
}

/** Parse a trusted-keys file's text (format above). Throws an Error naming the line. */
export function parseTrustedKeys(text: string): Map<string, TrustedKey> {
  if (Buffer.byteLength(text, 'utf8') > MAX_TRUSTED_KEYS_BYTES) throw new Error(`larger than ${MAX_TRUSTED_KEYS_BYTES} bytes`);
  const keys = new Map<string, TrustedKey>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)\s+ed25519:([A-Za-z0-9+/]{43}=)$/.exec(line);
    if (!m) throw new Error(`line ${i + 1}: expected "NAME ed25519:BASE64" (a 32-byte public key)`);
    const name = m[1]!;
    if (!KEY_NAME_RE.test(name)) throw new Error(`line ${i + 1}: key name may use letters, digits and _ . @ - (1 to 100)`);
    const raw = Buffer.from(m[2]!, 'base64');
    let key: KeyObject;
    try {
      key = publicKeyFromRaw(raw);
    } catch {
      throw new Error(`line ${i + 1}: not an Ed25519 public key`);
    }
    const keyId = keyIdOf(raw);
    const prev = keys.get(keyId);
    if (prev) throw new Error(`line ${i + 1}: the same key is listed twice (as ${prev.name} and ${name})`);
    if ([...keys.values()].some((k) => k.name === name)) throw new Error(`line ${i + 1}: the name ${name} is used twice`);
    keys.set(keyId, { name, keyId, key });
    if (keys.size > MAX_TRUSTED_KEYS) throw new Error(`more than ${MAX_TRUSTED_KEYS} keys`);
  }
  return keys;
}

/**
 * Outcome of checking a set against trusted keys. `coversJs`: the signature covers the set's compiled
 * JavaScript as well (the `/2` encoding), so a host may run exactly that JavaScript.
 */
export type SignatureVerdict =
  | { ok: true; signer: Required<Signer>; coversJs: boolean }
  | { ok: false; reason: 'unsigned' }
  | { ok: false; reason: 'unknown-key' | 'bad-signature'; keyId: string };

/** Check `set`'s signature against `trusted` (keyed by key id). Never throws. */
export function verifyPatchSet(set: PatchSet, trusted: ReadonlyMap<string, TrustedKey>): SignatureVerdict {
  const s = set.signature;
  if (!s) return { ok: false, reason: 'unsigned' };
  const k = trusted.get(s.keyId);
  if (!k) return { ok: false, reason: 'unknown-key', keyId: s.keyId };
  const sig = Buffer.from(s.value, 'base64');
  const withJs = s.format === SIGNATURE_FORMAT_JS;
  let good: boolean;
  try {
    good =
      sig.length === 64 &&
      s.alg === SIGNATURE_ALG &&
      (s.format === undefined || withJs) &&
      edVerify(null, canonicalPatchBytes(set, withJs), k.key, sig);
  } catch {
    good = false;
  }
  return good
    ? { ok: true, signer: { keyId: k.keyId, name: k.name }, coversJs: withJs }
    : { ok: false, reason: 'bad-signature', keyId: s.keyId };
}

/** `name (keyId)` or the key id alone. */
export function formatSigner(s: Signer): string {
  return s.name ? `${s.name} (${s.keyId})` : s.keyId;
}
