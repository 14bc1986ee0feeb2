/**
 * shared/signing.ts on its own: every field of a set is covered by the signature, key order does not
 * matter, a set carrying compiled JavaScript is signed over the /2 encoding that covers it (and not its
 * client-check hashes), and the trusted-keys parser refuses what it documents as invalid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatPublicKey,
  generateSigningKey,
  loadPrivateKey,
  parseTrustedKeys,
  signPatchSet,
  verifyPatchSet,
  type PatchSet,
} from '../shared';

const key = generateSigningKey();
const trusted = parseTrustedKeys(`ci ${formatPublicKey(key.publicRaw)}\n`);
const set: PatchSet = {
  id: 'p-1',
  message: 'm',
  files: { 'src/b.ts': 'export const b = 2;\n', 'src/a.ts': 'export const a = 1;\n' },
  base: { 'src/a.ts': 'a'.repeat(64) },
  verify: 'export function v(): void {}\n',
};
const signed = signPatchSet(set, loadPrivateKey(key.privatePem));

test('a signed set verifies, whatever the order of its keys; the signer is the trusted name and key id', () => {
  assert.deepEqual(verifyPatchSet(signed, trusted), { ok: true, signer: { keyId: key.keyId, name: 'ci' }, coversJs: false });
  assert.equal(signed.signature!.format, undefined, 'a set without compiled JavaScript is signed over /1');
  const reordered: PatchSet = {
    signature: signed.signature!,
    verify: set.verify!,
    base: set.base!,
    files: { 'src/a.ts': set.files['src/a.ts']!, 'src/b.ts': set.files['src/b.ts']! },
    message: 'm',
    id: 'p-1',
  };
  assert.equal(verifyPatchSet(reordered, trusted).ok, true);
});

test('changing any field voids the signature; no signature and an unknown key are told apart', () => {
  const changes: ((s: PatchSet) => void)[] = [
    (s) => (s.files['src/a.ts'] = 'export const a = 3;\n'),
    (s) => (s.files['src/c.ts'] = ''),
    (s) => (s.base = { 'src/a.ts': 'b'.repeat(64) }),
    (s) => delete s.base,
    (s) => (s.verify = ''),
    (s) => (s.id = 'p-2'),
    (s) => delete s.message,
  ];
  for (const change of changes) {
    const s = structuredClone(signed);
    change(s);
    assert.deepEqual(verifyPatchSet(s, trusted), { ok: false, reason: 'bad-signature', keyId: key.keyId }, String(change));
  }
  const { signature: _s, ...bare } = signed;
  assert.deepEqual(verifyPatchSet(bare, trusted), { ok: false, reason: 'unsigned' });
  const other = generateSigningKey();
  const foreign = signPatchSet(set, loadPrivateKey(other.privatePem));
  assert.deepEqual(verifyPatchSet(foreign, trusted), { ok: false, reason: 'unknown-key', keyId: other.keyId });
  // A trusted key id with another key's signature is a bad signature, not a pass.
  assert.equal(verifyPatchSet({ ...foreign, signature: { ...foreign.signature!, keyId: key.keyId } }, trusted).ok, false);
});

test('a set with compiled JavaScript is signed over /2: the JavaScript is covered, the client-check hashes are not', () => {
  const compiled = { js: { 'src/a.ts': 'exports.a = 1;\n', 'src/b.ts': 'exports.b = 2;\n' }, verifyJs: 'exports.v = () => {};\n' };
  const withJs = signPatchSet({ ...set, compiled }, loadPrivateKey(key.privatePem));
  assert.equal(withJs.signature!.format, 'livepatch-patch-set/2');
  assert.deepEqual(verifyPatchSet(withJs, trusted), { ok: true, signer: { keyId: key.keyId, name: 'ci' }, coversJs: true });
  // What a client adds at apply time is outside the signature.
  const checked = structuredClone(withJs);
  checked.compiled!.against = { 'src/main.ts': 'c'.repeat(64) };
  checked.compiled!.typescript = '5.0.0';
  assert.equal(verifyPatchSet(checked, trusted).ok, true);
  const changes: ((s: PatchSet) => void)[] = [
    (s) => (s.compiled!.js['src/a.ts'] = 'exports.a = 2;\n'),
    (s) => (s.compiled!.js['src/c.ts'] = ''),
    (s) => delete s.compiled!.js['src/b.ts'],
    (s) => (s.compiled!.verifyJs = ''),
    (s) => delete s.compiled!.verifyJs,
    (s) => delete s.compiled,
    (s) => (s.files['src/a.ts'] = 'export const a = 3;\n'),
    // Claiming the /1 encoding for a /2 signature (or an unknown one) does not verify either.
    (s) => delete s.signature!.format,
    (s) => ((s.signature as { format?: string }).format = 'livepatch-patch-set/3'),
  ];
  for (const change of changes) {
    const s = structuredClone(withJs);
    change(s);
    assert.deepEqual(verifyPatchSet(s, trusted), { ok: false, reason: 'bad-signature', keyId: key.keyId }, String(change));
  }
  // A /1 signature stays valid when compiled JavaScript is added later, but does not cover it.
  assert.deepEqual(verifyPatchSet({ ...signed, compiled: { ...compiled, against: {} } }, trusted), {
    ok: true,
    signer: { keyId: key.keyId, name: 'ci' },
    coversJs: false,
  });
});

test('the trusted-keys parser: comments and blank lines; bad lines, duplicate keys and names refused', () => {
  const k2 = generateSigningKey();
  const ok = parseTrustedKeys(`# fleet\n\nci ${formatPublicKey(key.publicRaw)}\r\nops@example ${formatPublicKey(k2.publicRaw)}\n`);
  assert.deepEqual(
    [...ok.values()].map((k) => [k.name, k.keyId]),
    [
      ['ci', key.keyId],
      ['ops@example', k2.keyId],
    ],
  );
  assert.throws(() => parseTrustedKeys('ci ed25519:short\n'), /line 1/);
  assert.throws(() => parseTrustedKeys(`bad/name ${formatPublicKey(key.publicRaw)}\n`), /line 1: key name/);
  assert.throws(
    () => parseTrustedKeys(`a ${formatPublicKey(key.publicRaw)}\nb ${formatPublicKey(key.publicRaw)}\n`),
    /line 2: the same key/,
  );
  assert.throws(() => parseTrustedKeys(`a ${formatPublicKey(key.publicRaw)}\na ${formatPublicKey(k2.publicRaw)}\n`), /line 2: the name a/);
  assert.throws(() => loadPrivateKey('not a key'), /not a PEM private key/);
});
