/**
 * Patch ops through the agent against a real child app: apply with forwarded progress and a
 * `committed` event, history attributing the generation to the token, two clients racing to commit on
 * the same generation (exactly one wins), rollback, and the audit records of all of it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AgentClient } from '../client/connection';
import { LivepatchError, type AgentEvent, type PatchSet } from '../shared';
import { bootAgentApp, readAudit, type AgentApp } from './helpers/raw-client';

function ratesPatch(label: string): PatchSet {
  return {
    message: `label ${label}`,
    files: {
      'src/rates.ts': `export const RATES_LABEL = '${label}';\nexport function rate(currency: string): number {\n  return currency === 'EUR' ? 1.1 : 1;\n}\nexport function tag(): string {\n  return 'A1';\n}\n`,
    },
  };
}

describe('agent patch ops', () => {
  let a: AgentApp;
  let p1: AgentClient;
  let p2: AgentClient;
  before(async () => {
    a = await bootAgentApp();
    p1 = await AgentClient.connect(a.address, { token: a.tokens.patch });
    p2 = await AgentClient.connect(a.address, { token: a.tokens.admin });
  });
  after(async () => {
    p1?.close();
    p2?.close();
    await a?.stop();
  });

  it('applies a patch with progress, tells subscribers, and attributes it in history', async () => {
    await p2.request('subscribe', {});
    const events: AgentEvent[] = [];
    p2.on('event', (e: AgentEvent) => events.push(e));
    const steps: string[] = [];
    const r = await p1.request('apply', { patch: ratesPatch('rates-v2') }, { onProgress: (m) => steps.push(m.step) });
    assert.equal(r.generation, 2);
    assert.ok(steps.includes('check') && steps.includes('commit'), `steps: ${steps.join(', ')}`);
    assert.deepEqual(await a.app.get('/label'), { label: 'rates-v2' });
    for (let i = 0; i < 50 && !events.some((e) => e.event === 'committed'); i++) await new Promise((res) => setTimeout(res, 20));
    const committed = events.find((e) => e.event === 'committed');
    assert.ok(committed && committed.event === 'committed');
    assert.deepEqual([committed.generation, committed.previousGeneration, committed.kind, committed.who], [2, 1, 'patch', 'patcher']);
    // Generation 1 had nothing in flight: it drains and is released right away.
    for (let i = 0; i < 100 && !events.some((e) => e.event === 'released'); i++) await new Promise((res) => setTimeout(res, 20));
    assert.deepEqual(
      events
        .filter((e) => e.event === 'drained' || e.event === 'released')
        .map((e) => `${e.event}:${'generation' in e ? e.generation : ''}`),
      ['drained:1', 'released:1'],
    );
    const h = await p1.request('history', { limit: 1 });
    assert.deepEqual([h.generations[0]?.generation, h.generations[0]?.who, h.generations[0]?.message], [2, 'patcher', 'label rates-v2']);
  });

  it('of two clients committing on the same generation, exactly one wins', async () => {
    const s1 = await p1.request('stage', { patch: ratesPatch('from-one') });
    const s2 = await p2.request('stage', { patch: ratesPatch('from-two') });
    assert.equal(s1.baseGeneration, s2.baseGeneration);
    const results = await Promise.allSettled([
      p1.request('commit', { stageId: s1.stageId }),
      p2.request('commit', { stageId: s2.stageId }),
    ]);
    const won = results.filter((x) => x.status === 'fulfilled');
    const lost = results.filter((x): x is PromiseRejectedResult => x.status === 'rejected');
    assert.equal(won.length, 1, JSON.stringify(results.map((x) => x.status)));
    assert.equal((lost[0]!.reason as LivepatchError).code, 'LP_ERR_PATCH_CONFLICT');
    const label = (await a.app.get('/label')).label;
    assert.ok(label === 'from-one' || label === 'from-two');
    assert.equal((await p1.request('status', {})).currentGeneration, 3);
  });

  it('an aborted stage cannot be committed', async () => {
    const st = await p1.request('stage', { patch: ratesPatch('never') });
    assert.deepEqual(await p1.request('abort', { stageId: st.stageId }), { aborted: true });
    await assert.rejects(p1.request('commit', { stageId: st.stageId }), (e: LivepatchError) => e.code === 'LP_ERR_PATCH_STAGE_UNKNOWN');
    assert.notEqual((await a.app.get('/label')).label, 'never');
  });

  it('rolls back to an earlier generation', async () => {
    const r = await p1.request('rollback', { to: 1 });
    assert.equal(r.generation, 4);
    assert.deepEqual(await a.app.get('/label'), { label: 'rates-v1' });
  });

  it('audits patch ops with who, patch hashes, stage ids and outcomes', () => {
    const recs = readAudit(a.auditFile).filter((r) => ['apply', 'stage', 'commit', 'abort', 'rollback'].includes(r.op));
    assert.deepEqual(recs.map((r) => `${r.op}:${r.outcome}`).sort(), [
      'abort:ok',
      'apply:ok',
      'commit:LP_ERR_PATCH_CONFLICT',
      'commit:LP_ERR_PATCH_STAGE_UNKNOWN',
      'commit:ok',
      'rollback:ok',
      'stage:ok',
      'stage:ok',
      'stage:ok',
    ]);
    const apply = recs.find((r) => r.op === 'apply');
    assert.match(apply.hashes['src/rates.ts'], /^[0-9a-f]{64}$/);
    assert.equal(apply.generation, 2);
    assert.ok(recs.filter((r) => r.op === 'commit').every((r) => typeof r.stageId === 'string'));
  });
});
