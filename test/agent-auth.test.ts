/**
 * The authentication and authorisation matrix against a real agent in a child app: missing, wrong and
 * replayed handshakes are refused, a browser Origin gets HTTP 403, role-denied ops change nothing and
 * are audited, and repeated wrong proofs lock that token id out at that address.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AgentClient } from '../client/connection';
import { CLOSE, LivepatchError, parseToken, type PatchSet } from '../shared';
import { bootAgentApp, openAuthed, openRaw, readAudit, type AgentApp } from './helpers/raw-client';

/** A token with a real id but another secret. */
function forged(token: string): string {
  return `lp_${parseToken(token)!.id}_${randomBytes(32).toString('base64url')}`;
}

const patch: PatchSet = {
  files: {
    'src/rates.ts':
      "export const RATES_LABEL = 'hacked';\nexport function rate(c: string): number { return 0; }\nexport function tag(): string { return 'X'; }\n",
  },
};

describe('agent authentication', () => {
  let a: AgentApp;
  before(async () => {
    a = await bootAgentApp({
      LIVEPATCH_HANDSHAKE_MS: '600',
      LIVEPATCH_LOCKOUT: '1000/60000/60000',
      LIVEPATCH_ALLOWED_ORIGINS: 'https://ops.example',
    });
  });
  after(async () => {
    await a?.stop();
  });

  it('closes a connection that sends no auth message (4002)', async () => {
    const c = await openRaw(a.address);
    const hello = await c.next((m) => m.type === 'hello');
    assert.equal(hello.auth, 'scram-sha256');
    assert.equal((await c.closed).code, CLOSE.AUTH_TIMEOUT);
  });

  it('closes a connection whose first frame is not an auth message (4001)', async () => {
    const c = await openRaw(a.address);
    await c.next((m) => m.type === 'hello');
    c.send(JSON.stringify({ type: 'request', id: 1, op: 'status' }));
    const closed = await c.closed;
    assert.equal(closed.code, CLOSE.AUTH_FAILED);
    assert.equal(c.messages.filter((m) => m.type === 'reply').length, 0, 'no op ran before auth');
  });

  it('closes a handshake that speaks another protocol version (4003)', async () => {
    const c = await openRaw(a.address);
    await c.next((m) => m.type === 'hello');
    c.send(JSON.stringify({ type: 'auth', protocol: 99, tokenId: '00000000', clientNonce: 'n'.repeat(24), proof: 'p'.repeat(43) }));
    assert.equal((await c.closed).code, CLOSE.PROTOCOL_VERSION);
  });

  it('refuses a wrong secret for a real token id', async () => {
    await assert.rejects(
      AgentClient.connect(a.address, { token: forged(a.tokens.admin) }),
      (e: LivepatchError) => e.code === 'LP_ERR_AUTH_DENIED',
    );
  });

  it('refuses a replayed auth frame on a new connection', async () => {
    const first = await openAuthed(a.address, a.tokens.admin);
    first.close();
    const c = await openRaw(a.address);
    await c.next((m) => m.type === 'hello');
    c.send(first.authFrame!);
    assert.equal((await c.closed).code, CLOSE.AUTH_FAILED);
    assert.equal(
      c.messages.some((m) => m.type === 'welcome'),
      false,
    );
  });

  it('refuses a browser Origin with HTTP 403 and accepts an allowed one', async () => {
    await assert.rejects(openRaw(a.address, { headers: { Origin: 'https://evil.example' } }), /403/);
    const ok = await openRaw(a.address, { headers: { Origin: 'https://ops.example' } });
    assert.equal((await ok.next((m) => m.type === 'hello')).type, 'hello');
    ok.close();
  });

  it('denies ops above the token role, changes nothing and audits the denials', async () => {
    const admin = await AgentClient.connect(a.address, { token: a.tokens.admin });
    const reader = await AgentClient.connect(a.address, { token: a.tokens.read });
    const patcher = await AgentClient.connect(a.address, { token: a.tokens.patch });
    try {
      const before = await admin.request('versions', {});
      const forbidden = (e: LivepatchError) => e.code === 'LP_ERR_AUTH_FORBIDDEN';
      await assert.rejects(reader.request('apply', { patch }), forbidden);
      await assert.rejects(reader.request('rollback', {}), forbidden);
      await assert.rejects(reader.request('stage', { patch }), forbidden);
      await assert.rejects(reader.request('commit', { stageId: 'x' }), forbidden);
      await assert.rejects(patcher.request('audit-verify', {}), forbidden);
      // eval is open to read tokens, but only for side-effect-free code.
      await assert.rejects(
        reader.request('eval', { code: '(globalThis as any).pwned = 1' }),
        (e: LivepatchError) => e.code === 'LP_ERR_EVAL_SIDE_EFFECT',
      );
      await assert.rejects(
        patcher.request('eval', { code: 'process.exitCode = 3' }),
        (e: LivepatchError) => e.code === 'LP_ERR_EVAL_SIDE_EFFECT',
      );
      assert.equal(
        (await admin.request('eval', { code: '(globalThis as any).pwned === undefined && process.exitCode === undefined' })).output,
        'true',
      );
      assert.deepEqual(await admin.request('versions', {}), before);
      assert.equal((await admin.request('status', {})).currentGeneration, 1);
      assert.deepEqual(await a.app.get('/label'), { label: 'rates-v1' });
      const denied = readAudit(a.auditFile).filter((r) => r.outcome === 'LP_ERR_AUTH_FORBIDDEN');
      assert.deepEqual(
        denied.map((r) => `${r.who}:${r.op}`),
        ['reader:apply', 'reader:rollback', 'reader:stage', 'reader:commit', 'patcher:audit-verify'],
      );
      const evals = readAudit(a.auditFile).filter((r) => r.op === 'eval');
      assert.deepEqual(
        evals.map((r) => `${r.who}:${r.outcome}`),
        ['reader:LP_ERR_EVAL_SIDE_EFFECT', 'patcher:LP_ERR_EVAL_SIDE_EFFECT', 'root:ok'],
      );
    } finally {
      admin.close();
      reader.close();
      patcher.close();
    }
  });

  it('audits every failed handshake and the chain verifies', async () => {
    const records = readAudit(a.auditFile).filter((r) => r.op === 'auth');
    const outcomes = new Set(records.map((r) => r.outcome));
    for (const o of ['ok', 'LP_ERR_AUTH_DENIED', 'LP_ERR_AUTH_REQUIRED'])
      assert.ok(outcomes.has(o), `audit has ${o}: ${[...outcomes].join(', ')}`);
    assert.ok(readAudit(a.auditFile).some((r) => r.op === 'connect' && r.outcome === 'LP_ERR_AUTH_ORIGIN'));
    const admin = await AgentClient.connect(a.address, { token: a.tokens.admin });
    assert.equal((await admin.request('audit-verify', {})).ok, true);
    admin.close();
  });

  it('the app kept serving', async () => {
    assert.deepEqual(await a.app.get('/health'), { ok: true });
  });
});

describe('agent lockout', () => {
  let a: AgentApp;
  before(async () => {
    a = await bootAgentApp({ LIVEPATCH_LOCKOUT: '3/60000/60000', LIVEPATCH_AUTH_FAIL_DELAY_MS: '0' });
  });
  after(async () => {
    await a?.stop();
  });

  it('locks a token id out at an address after repeated wrong proofs, even with the right secret; other tokens still log in', async () => {
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        AgentClient.connect(a.address, { token: forged(a.tokens.read) }),
        (e: LivepatchError) => e.code === 'LP_ERR_AUTH_DENIED',
      );
    }
    await assert.rejects(AgentClient.connect(a.address, { token: a.tokens.read }), (e: LivepatchError) => e.code === 'LP_ERR_AUTH_LOCKED');
    await assert.rejects(AgentClient.connect(a.address, { token: a.tokens.read }), (e: LivepatchError) => e.code === 'LP_ERR_AUTH_LOCKED');
    const admin = await AgentClient.connect(a.address, { token: a.tokens.admin });
    assert.equal(admin.role, 'admin');
    admin.close();
    // Refusals while locked are counted into one record per address and minute, so retrying cannot fill the disk.
    const locked = readAudit(a.auditFile).filter((r) => r.outcome === 'LP_ERR_AUTH_LOCKED');
    assert.equal(locked.length, 1);
    assert.deepEqual(await a.app.get('/health'), { ok: true });
  });
});
