import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ERROR_CODES,
  ERRORS,
  parseFrame,
  parseTarget,
  parseToken,
  generateToken,
  computeProof,
  verifyProof,
  newNonce,
  roleAllows,
  formatDiagnostic,
} from '../shared';
import { REPO } from './helpers/project';

test('parseFrame refuses deep nesting and prototype keys, accepts plain JSON', () => {
  assert.equal(parseFrame('['.repeat(100) + ']'.repeat(100)).ok, false);
  assert.equal(parseFrame('{"__proto__":{"x":1}}').ok, false);
  assert.equal(parseFrame('{"a":{"constructor":{"prototype":1}}}').ok, false);
  assert.equal(parseFrame('not json').ok, false);
  // The agent picks its error code from the kind (LP_ERR_PROTO_BAD_JSON for not-json only).
  const kinds = [parseFrame('not json'), parseFrame('['.repeat(100) + ']'.repeat(100)), parseFrame('{"__proto__":{}}')].map((r) =>
    r.ok ? 'ok' : r.kind,
  );
  assert.deepEqual(kinds, ['not-json', 'too-deep', 'forbidden-key']);
  const ok = parseFrame('{"type":"request","id":1,"op":"status","args":{"s":"[[[[{{{"}}');
  assert.deepEqual(ok, { ok: true, value: { type: 'request', id: 1, op: 'status', args: { s: '[[[[{{{' } } });
});

test('handshake proof verifies for the right token and nonces only', () => {
  const { token, storedKey } = generateToken();
  const parsed = parseToken(token)!;
  const sn = newNonce();
  const cn = newNonce();
  const proof = computeProof(parsed, sn, cn);
  assert.equal(verifyProof(storedKey, parsed.id, sn, cn, proof), true);
  assert.equal(verifyProof(storedKey, parsed.id, newNonce(), cn, proof), false, 'replay under a new server nonce');
  const other = generateToken();
  assert.equal(verifyProof(other.storedKey, parsed.id, sn, cn, proof), false, 'wrong key');
  assert.equal(parseToken('lp_zz_abc'), undefined);
});

test('roles are ordered read < patch < admin', () => {
  assert.equal(roleAllows('admin', 'patch'), true);
  assert.equal(roleAllows('patch', 'admin'), false);
  assert.equal(roleAllows('read', 'read'), true);
});

test('targets parse host:port, [v6]:port and unix paths', () => {
  assert.deepEqual(parseTarget('127.0.0.1:12345'), { kind: 'tcp', host: '127.0.0.1', port: 12345 });
  assert.deepEqual(parseTarget('[::1]:9'), { kind: 'tcp', host: '::1', port: 9 });
  assert.deepEqual(parseTarget('unix:/tmp/a.sock'), { kind: 'unix', path: '/tmp/a.sock' });
  assert.equal(parseTarget('nohost'), undefined);
  assert.equal(parseTarget('h:99999'), undefined);
});

test('diagnostics render in tsc form', () => {
  assert.equal(
    formatDiagnostic({
      file: 'src/quote.ts',
      line: 12,
      column: 5,
      code: 2554,
      category: 'error',
      message: 'Expected 2 arguments, but got 1.',
    }),
    'src/quote.ts(12,5): error TS2554: Expected 2 arguments, but got 1.',
  );
});

test('every error code is documented in docs/errors.md and every documented code exists', () => {
  const doc = readFileSync(join(REPO, 'docs', 'errors.md'), 'utf8');
  const documented = new Set(doc.match(/LP_ERR_[A-Z_]+/g) ?? []);
  for (const code of ERROR_CODES) assert.ok(documented.has(code), `${code} missing from docs/errors.md`);
  for (const code of documented) assert.ok(code in ERRORS, `docs/errors.md names unknown ${code}`);
});
