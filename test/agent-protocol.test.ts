/**
 * The agent's protocol surface against a real agent in a child app: describe mirrors the op catalogue,
 * status and the inspection ops answer, and malformed requests get the documented error replies.
 * Also keeps docs/protocol.md in sync with shared/ops.ts and the close codes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { CLOSE, LivepatchError, OPS, OP_NAMES, PROTOCOL_VERSION } from '../shared';
import { extractOpTable, renderOpTable } from '../server/agent/protocol-doc';
import { REPO } from './helpers/project';
import { bootAgentApp, openAuthed, rawRequest, type AgentApp, type RawClient } from './helpers/raw-client';

describe('docs/protocol.md', () => {
  const doc = readFileSync(join(REPO, 'docs', 'protocol.md'), 'utf8');
  it('lists exactly the ops of shared/ops.ts (regenerate: node dist/server/agent/protocol-doc.js --write)', () => {
    assert.equal(extractOpTable(doc), renderOpTable());
  });
  it('documents every close code', () => {
    for (const [name, code] of Object.entries(CLOSE))
      assert.match(doc, new RegExp(`\\| ${code} \\| ${name} \\|`), `close code ${name} (${code})`);
  });
});

describe('agent protocol', () => {
  let a: AgentApp;
  let client: AgentClient;
  let raw: RawClient;
  before(async () => {
    a = await bootAgentApp();
    client = await AgentClient.connect(a.address, { token: a.tokens.read });
    raw = await openAuthed(a.address, a.tokens.read);
  });
  after(async () => {
    client?.close();
    raw?.close();
    await a?.stop();
  });

  it('welcomes the token by name and role', () => {
    assert.equal(client.name, 'reader');
    assert.equal(client.role, 'read');
    assert.equal(client.hello.protocol, PROTOCOL_VERSION);
  });

  it('describe returns the whole catalogue from shared/ops.ts', async () => {
    const d = await client.request('describe', {});
    assert.equal(d.protocol, PROTOCOL_VERSION);
    assert.deepEqual(
      d.ops,
      OP_NAMES.map((name) => ({ name, role: OPS[name].role, doc: OPS[name].doc })),
    );
  });

  it('status reports the host process and its live generation', async () => {
    const s = await client.request('status', {});
    assert.equal(s.pid, a.app.child.pid);
    assert.equal(s.currentGeneration, 1);
    assert.ok(s.modules >= 4, `modules: ${s.modules}`);
    assert.deepEqual(s.patchedModules, []);
    assert.ok(s.liveGenerations.some((g) => g.current && g.generation === 1));
    assert.equal(typeof s.patching.enabled, 'boolean');
  });

  it('versions, source and exports describe live modules', async () => {
    const v = await client.request('versions', {});
    assert.ok(
      v.some((r) => r.module === 'src/rates.ts' && r.version === 1 && !r.patched),
      JSON.stringify(v),
    );
    const src = await client.request('source', { module: 'src/rates.ts' });
    assert.match(src.source, /rates-v1/);
    const ex = await client.request('exports', { module: 'src/rates.ts' });
    assert.deepEqual(ex.exports.map((e) => e.name).sort(), ['RATES_LABEL', 'rate', 'tag']);
    await assert.rejects(
      client.request('source', { module: 'src/nope.ts' }),
      (e: LivepatchError) => e.code === 'LP_ERR_PATCH_UNKNOWN_MODULE',
    );
  });

  it('answers a frame that is not JSON with id null and LP_ERR_PROTO_BAD_JSON', async () => {
    raw.send('{"type":"request",');
    const r = await raw.next((m) => m.type === 'reply' && m.id === null);
    assert.equal(r.ok, false);
    assert.equal(r.error.code, 'LP_ERR_PROTO_BAD_JSON');
    assert.equal(r.error.stack, undefined);
  });

  it('answers a wrong envelope with id null and the schema issues', async () => {
    raw.send(JSON.stringify({ type: 'request', id: { x: 1 }, op: 'status' }));
    const r = await raw.next((m) => m.type === 'reply' && m.id === null);
    assert.equal(r.error.code, 'LP_ERR_PROTO_BAD_MESSAGE');
    assert.ok(
      r.error.details.issues.some((i: any) => i.path === 'id'),
      JSON.stringify(r.error),
    );
  });

  it('refuses __proto__ keys without polluting anything', async () => {
    raw.send('{"type":"request","id":50,"op":"status","args":{"__proto__":{"polluted":1}}}');
    const r = await raw.next((m) => m.type === 'reply' && m.id === null);
    assert.equal(r.error.code, 'LP_ERR_PROTO_BAD_MESSAGE');
    assert.match(r.error.message, /forbidden key/);
    const s = await rawRequest(raw, 51, 'status', {});
    assert.equal(s.ok, true);
  });

  it('answers an unknown op with LP_ERR_OP_UNKNOWN under its id', async () => {
    const r = await rawRequest(raw, 'u1', 'format-disk', {});
    assert.deepEqual([r.ok, r.error.code], [false, 'LP_ERR_OP_UNKNOWN']);
  });

  it('answers bad args with LP_ERR_OP_BAD_ARGS and per-field issues', async () => {
    const r = await rawRequest(raw, 60, 'source', { module: 42, extra: true });
    assert.equal(r.error.code, 'LP_ERR_OP_BAD_ARGS');
    const paths = r.error.details.issues.map((i: any) => i.path);
    assert.ok(paths.includes('module'), JSON.stringify(paths));
  });

  it('refuses binary frames with id null', async () => {
    raw.send(Buffer.from([1, 2, 3]));
    const r = await raw.next((m) => m.type === 'reply' && m.id === null);
    assert.equal(r.error.code, 'LP_ERR_PROTO_BAD_MESSAGE');
  });

  it('subscribe acknowledges the subscription', async () => {
    const sub = await rawRequest(raw, 70, 'subscribe', {});
    assert.deepEqual(sub.result, { subscribed: true });
  });

  it('history lists the deploy generation', async () => {
    const h = await client.request('history', {});
    assert.equal(h.generations[0]?.generation, 1);
    assert.equal(h.generations[0]?.kind, 'deploy');
  });

  it('opens, uses and closes a REPL session', async () => {
    const { session } = await client.request('repl-open', {});
    assert.equal((await client.request('eval', { code: '(20 + 1) * 2', session })).output, '42');
    assert.deepEqual(await client.request('repl-close', { session }), { closed: true });
    await assert.rejects(client.request('eval', { code: '1', session }), (e: LivepatchError) => e.code === 'LP_ERR_EVAL_SESSION');
  });

  it('the app kept serving throughout', async () => {
    assert.deepEqual(await a.app.get('/health'), { ok: true });
  });
});
