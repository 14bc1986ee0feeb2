/**
 * Thousands of malformed frames against a real agent in a child app (random bytes, wrong shapes,
 * unknown ops, random args, deep nesting, `__proto__` keys, garbage handshakes): every reply is a
 * registered error without a stack, closes use documented codes, and afterwards the agent and the host
 * app both still serve, with no polluted prototype. The generator is bench/fuzz.ts (seeded).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AgentClient } from '../client/connection';
import { CLOSE } from '../shared';
import { runFuzz } from '../bench/fuzz';
import { bootAgentApp, type AgentApp } from './helpers/raw-client';

describe('agent fuzzing', () => {
  let a: AgentApp;
  before(async () => {
    a = await bootAgentApp({
      LIVEPATCH_MAX_PAYLOAD: String(256 * 1024),
      LIVEPATCH_LOCKOUT: '1000000/60000/1000',
      LIVEPATCH_AUTH_FAIL_DELAY_MS: '0',
    });
  });
  after(async () => {
    await a?.stop();
  });

  it('survives 3000 malformed frames with well-formed error replies', async () => {
    const stats = await runFuzz(a.address, a.tokens.read, 3000, 7, { big: false });
    assert.deepEqual(stats.problems, []);
    assert.ok(stats.replies >= 2000, `replies: ${stats.replies}`);
    for (const code of ['LP_ERR_PROTO_BAD_JSON', 'LP_ERR_PROTO_BAD_MESSAGE', 'LP_ERR_OP_BAD_ARGS', 'ok'])
      assert.ok(stats.byCode[code]! > 0, `saw ${code}: ${JSON.stringify(stats.byCode)}`);
    const documented = new Set([CLOSE.NORMAL, CLOSE.TOO_BIG, CLOSE.AUTH_FAILED].map(String));
    for (const key of Object.keys(stats.closes)) assert.ok(documented.has(key.replace('pre-auth ', '')), `close ${key}`);
  });

  it('a second seed with oversized frames closes with 1009 and nothing else breaks', async () => {
    const stats = await runFuzz(a.address, a.tokens.read, 1500, 11, { big: true });
    assert.deepEqual(stats.problems, []);
    assert.ok((stats.closes[String(CLOSE.TOO_BIG)] ?? 0) > 0, JSON.stringify(stats.closes));
  });

  it('afterwards the agent and the app both serve, and no prototype was polluted', async () => {
    assert.equal(a.app.child.exitCode, null);
    assert.deepEqual(await a.app.get('/health'), { ok: true });
    assert.deepEqual(await a.app.get('/quote?c=EUR&a=10'), { total: 11 });
    const admin = await AgentClient.connect(a.address, { token: a.tokens.admin });
    try {
      assert.equal((await admin.request('status', {})).currentGeneration, 1);
      assert.equal(
        (await admin.request('eval', { code: '({} as any).polluted === undefined && (Object.prototype as any).polluted === undefined' }))
          .output,
        'true',
      );
    } finally {
      admin.close();
    }
    assert.doesNotMatch(a.app.stderr(), /livepatch: (internal error|error in)/);
  });
});
