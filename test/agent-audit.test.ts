/**
 * The audit log's hash chain: verifyAuditFile on a log written by a real agent, and the `audit-verify`
 * op catching an edited, a deleted and a truncated record while the agent runs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { AgentClient } from '../client/connection';
import { verifyAuditFile } from '../server/agent';
import { OP_NAMES, OPS } from '../shared/ops';
import { bootAgentApp, readAudit, type AgentApp } from './helpers/raw-client';

function lines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter(Boolean);
}

describe('audit log chain', () => {
  let a: AgentApp;
  let admin: AgentClient;
  let pristine: string;
  before(async () => {
    a = await bootAgentApp();
    admin = await AgentClient.connect(a.address, { token: a.tokens.admin });
    // A few audited events: a failed handshake, two handshakes, a denied op.
    await AgentClient.connect(a.address, { token: a.tokens.read.slice(0, -4) + 'AAAA' }).catch(() => undefined);
    const reader = await AgentClient.connect(a.address, { token: a.tokens.read });
    await reader.request('rollback', {}).catch(() => undefined);
    // Allowed: status (not audited when allowed, per the op catalogue) and audit-verify (audited).
    await reader.request('status', {});
    await reader.request('versions', {});
    await admin.request('audit-verify', {});
    reader.close();
    await new Promise((r) => setTimeout(r, 300));
    pristine = readFileSync(a.auditFile, 'utf8');
  });
  after(async () => {
    admin?.close();
    await a?.stop();
  });

  it('records who, from where, which op and the outcome, each chained to the previous line', () => {
    const recs = readAudit(a.auditFile);
    assert.ok(recs.length >= 5, `records: ${recs.length}`);
    assert.equal(recs[0].prev, '0'.repeat(64));
    assert.ok(recs.some((r) => r.op === 'auth' && r.outcome === 'LP_ERR_AUTH_DENIED' && r.remote === '127.0.0.1'));
    assert.ok(recs.some((r) => r.op === 'rollback' && r.who === 'reader' && r.outcome === 'LP_ERR_AUTH_FORBIDDEN'));
    assert.ok(
      recs.some((r) => r.op === 'audit-verify' && r.outcome === 'ok'),
      'an allowed audited op is recorded',
    );
    const quiet = OP_NAMES.filter((op) => !OPS[op].audited);
    assert.ok(quiet.includes('status') && quiet.includes('versions'));
    assert.deepEqual(
      recs.filter((r) => quiet.includes(r.op)),
      [],
      'allowed ops the catalogue marks unaudited are not recorded',
    );
    for (const r of recs) assert.match(r.time, /^\d{4}-\d\d-\d\dT/);
    const v = verifyAuditFile(a.auditFile);
    assert.deepEqual(v, { ok: true, records: recs.length });
  });

  it('audit-verify catches an edited line', async () => {
    const ls = lines(a.auditFile);
    const target = ls.findIndex((l) => l.includes('LP_ERR_AUTH_DENIED'));
    assert.ok(target > 0 && target < ls.length - 1);
    ls[target] = ls[target]!.replace('LP_ERR_AUTH_DENIED', 'ok');
    writeFileSync(a.auditFile, ls.join('\n') + '\n');
    const v = await admin.request('audit-verify', {});
    assert.equal(v.ok, false);
    assert.equal(v.brokenAt, target + 2, `the line after the edited one (${target + 1}) no longer chains`);
    assert.equal(verifyAuditFile(a.auditFile).ok, false);
  });

  it('audit-verify catches a deleted line', async () => {
    const ls = pristine.split('\n').filter(Boolean);
    ls.splice(2, 1);
    writeFileSync(a.auditFile, ls.join('\n') + '\n');
    const v = await admin.request('audit-verify', {});
    assert.deepEqual([v.ok, v.brokenAt], [false, 3]);
  });

  it('audit-verify catches a truncated tail that still chains', async () => {
    const ls = pristine.split('\n').filter(Boolean);
    writeFileSync(a.auditFile, ls.slice(0, -1).join('\n') + '\n');
    assert.equal(verifyAuditFile(a.auditFile).ok, true, 'a prefix of a chain is a chain');
    const v = await admin.request('audit-verify', {});
    assert.equal(v.ok, false);
    assert.match(v.reason ?? '', /last record/);
  });
});
