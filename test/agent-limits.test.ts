/**
 * Agent limits and listening rules against real child apps: oversized frames, in-flight ops,
 * connection count, idle timeout, the non-loopback-without-TLS refusal, and Unix sockets. After each
 * limit trips, the agent and the host app keep serving.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { CLOSE, LivepatchError } from '../shared';
import { createProject, createTokens, startApp } from './helpers/project';
import { bootAgentApp, openAuthed, rawRequest, type AgentApp } from './helpers/raw-client';
import { selfSignedCert } from './helpers/tls';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('agent limits', () => {
  let a: AgentApp;
  before(async () => {
    a = await bootAgentApp({ LIVEPATCH_MAX_PAYLOAD: '65536', LIVEPATCH_MAX_INFLIGHT: '2', LIVEPATCH_MAX_CONNECTIONS: '3' });
  });
  after(async () => {
    await a?.stop();
  });

  it('closes a connection that sends an oversized frame with 1009', async () => {
    const c = await openAuthed(a.address, a.tokens.admin);
    c.send(JSON.stringify({ type: 'request', id: 1, op: 'status', args: { pad: 'x'.repeat(100_000) } }));
    assert.equal((await c.closed).code, CLOSE.TOO_BIG);
    const again = await AgentClient.connect(a.address, { token: a.tokens.read });
    assert.equal((await again.request('status', {})).currentGeneration, 1);
    again.close();
  });

  it('refuses ops beyond the in-flight limit and reused in-flight ids, and answers every id exactly once', async () => {
    const c = await openAuthed(a.address, a.tokens.patch);
    const patch = {
      files: {
        'src/quote.ts':
          "import { rate } from './rates';\nexport function quote(c: string, a: number): number { return a * rate(c); }\nexport function tag(): string { return 'B2'; }\nexport class Counter { count = 0; hit(): number { return ++this.count; } label(): string { return 'v2'; } }\n",
      },
    };
    for (let id = 1; id <= 6; id++) c.send(JSON.stringify({ type: 'request', id, op: 'check', args: { patch } }));
    // Reusing an id that is still in flight would give it two replies: it is refused under id null.
    c.send(JSON.stringify({ type: 'request', id: 1, op: 'status' }));
    const dup = await c.next((m) => m.type === 'reply' && m.id === null);
    assert.equal(dup.error.code, 'LP_ERR_PROTO_BAD_MESSAGE');
    assert.match(dup.error.message, /already in flight/);
    const replies = [];
    for (let id = 1; id <= 6; id++) replies.push(await c.next((m) => m.type === 'reply' && m.id === id, 60_000));
    const limited = replies.filter((r) => !r.ok && r.error.code === 'LP_ERR_LIMIT_INFLIGHT');
    assert.ok(limited.length >= 1 && limited.length <= 4, JSON.stringify(replies.map((r) => r.ok || r.error.code)));
    await sleep(100);
    assert.equal(c.messages.filter((m) => m.type === 'reply' && typeof m.id === 'number').length, 6, 'one reply per id');
    const after = await rawRequest(c, 7, 'status', {});
    assert.equal(after.ok, true);
    c.close();
  });

  it('refuses connections beyond the limit with 4007 and accepts again when one closes', async () => {
    await sleep(200); // let earlier tests' sockets finish closing on the agent
    const open: AgentClient[] = [];
    for (let i = 0; i < 3; i++) open.push(await AgentClient.connect(a.address, { token: a.tokens.read }));
    await assert.rejects(
      AgentClient.connect(a.address, { token: a.tokens.read }),
      (e: LivepatchError) => e.code === 'LP_ERR_LIMIT_CONNECTIONS',
    );
    const closed = new Promise((r) => open[0]!.once('close', r));
    open[0]!.close();
    await closed;
    await sleep(100);
    const c = await AgentClient.connect(a.address, { token: a.tokens.read });
    assert.equal((await c.request('status', {})).pid, a.app.child.pid);
    for (const x of [...open.slice(1), c]) x.close();
  });

  it('the app kept serving', async () => {
    assert.deepEqual(await a.app.get('/health'), { ok: true });
  });
});

describe('agent reply backlog', () => {
  let a: AgentApp;
  before(async () => {
    a = await bootAgentApp({ LIVEPATCH_MAX_BUFFERED: String(128 * 1024) });
  });
  after(async () => {
    await a?.stop();
  });

  it('closes a connection that sends requests but never reads the replies (1008)', async () => {
    const c = await openAuthed(a.address, a.tokens.read);
    const socket = (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    // Small paced batches, so most requests are answered in full (describe, ~3 KB) rather than refused.
    for (let id = 1; id <= 4000; id++) {
      c.send(JSON.stringify({ type: 'request', id, op: 'describe' }));
      if (id % 8 === 0) await sleep(2);
    }
    socket.resume();
    const closed = await Promise.race([c.closed, sleep(20_000).then(() => ({ code: -1, reason: 'still open after 20 s' }))]);
    // 1008 once the client reads again; 1006 if it stayed silent past the agent's close grace period.
    if (closed.code === 1006) assert.ok(c.messages.filter((m) => m.type === 'reply').length < 4000);
    else assert.deepEqual(closed, { code: 1008, reason: 'replies are not being read' });
    const again = await AgentClient.connect(a.address, { token: a.tokens.read });
    assert.equal((await again.request('status', {})).pid, a.app.child.pid);
    again.close();
  });
});

describe('agent idle timeout and Unix socket', () => {
  let a: AgentApp;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lp-sock-'));
    a = await bootAgentApp({ LIVEPATCH_LISTEN: `unix:${join(dir, 'agent.sock')}`, LIVEPATCH_IDLE_MS: '400' });
  });
  after(async () => {
    await a?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('listens on a Unix socket only its owner can use', async () => {
    assert.equal(a.address, `unix:${join(dir, 'agent.sock')}`);
    assert.equal(statSync(join(dir, 'agent.sock')).mode & 0o777, 0o600);
  });

  it('closes an authenticated connection that stays silent (4005), not a subscriber', async () => {
    const quiet = await AgentClient.connect(a.address, { token: a.tokens.read });
    const sub = await AgentClient.connect(a.address, { token: a.tokens.read });
    await sub.request('subscribe', {});
    const closed = await new Promise<{ code: number }>((r) => quiet.once('close', r));
    assert.equal(closed.code, CLOSE.IDLE);
    await sleep(500);
    assert.equal(sub.closed, false);
    assert.equal((await sub.request('status', {})).currentGeneration, 1);
    sub.close();
  });
});

describe('agent heartbeat', () => {
  let a: AgentApp;
  before(async () => {
    a = await bootAgentApp({ LIVEPATCH_HEARTBEAT_MS: '200' });
  });
  after(async () => {
    await a?.stop();
  });

  it('drops a peer that stops answering pings, keeps one that answers', async () => {
    const dead = await openAuthed(a.address, a.tokens.read, { autoPong: false });
    const live = await AgentClient.connect(a.address, { token: a.tokens.read });
    const closed = await dead.closed;
    assert.equal(closed.code, 1006, 'terminated without a close frame');
    assert.equal(live.closed, false);
    assert.equal((await live.request('status', {})).currentGeneration, 1);
    live.close();
  });
});

describe('agent bind rules', () => {
  it('refuses a non-loopback address without TLS, says why, and the app still serves', async () => {
    const project = createProject();
    const tokens = createTokens(project.root);
    const app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_LISTEN: '0.0.0.0:0' }, waitAgent: false });
    try {
      for (let i = 0; i < 50 && !app.stderr().includes('agent not started'); i++) await sleep(100);
      assert.match(
        app.stderr(),
        /livepatch: agent not started: refusing to listen on 0\.0\.0\.0:0 without TLS: .*clear text.*LIVEPATCH_INSECURE=1/,
      );
      assert.doesNotMatch(app.stderr(), /agent listening/);
      assert.deepEqual(await app.get('/health'), { ok: true });
    } finally {
      await app.stop();
      project.cleanup();
    }
  });

  it('binds a non-loopback address when explicitly allowed', async () => {
    const a = await bootAgentApp({ LIVEPATCH_LISTEN: '0.0.0.0:0', LIVEPATCH_INSECURE: '1' });
    try {
      assert.match(a.address, /^0\.0\.0\.0:\d+$/);
      const c = await AgentClient.connect(a.address.replace('0.0.0.0', '127.0.0.1'), { token: a.tokens.read });
      assert.equal(c.role, 'read');
      c.close();
    } finally {
      await a.stop();
    }
  });

  it('serves wss on a non-loopback address when TLS is configured', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lp-tls-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    selfSignedCert(key, cert, 'localhost');
    const a = await bootAgentApp({ LIVEPATCH_LISTEN: '0.0.0.0:0', LIVEPATCH_TLS_CERT: cert, LIVEPATCH_TLS_KEY: key });
    try {
      const target = a.address.replace('0.0.0.0', '127.0.0.1');
      const c = await AgentClient.connect(target, { token: a.tokens.read, tls: true, ca: readFileSync(cert) });
      assert.equal((await c.request('status', {})).pid, a.app.child.pid);
      c.close();
      await assert.rejects(AgentClient.connect(target, { token: a.tokens.read, timeoutMs: 3000 }), (e: LivepatchError) =>
        e.code.startsWith('LP_ERR_CONN'),
      );
    } finally {
      await a.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start without a tokens file, and the app still serves', async () => {
    const project = createProject();
    const app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: undefined }, waitAgent: false });
    try {
      for (let i = 0; i < 50 && !app.stderr().includes('agent not started'); i++) await sleep(100);
      assert.match(app.stderr(), /livepatch: agent not started: LIVEPATCH_TOKENS is not set \(there is no unauthenticated mode\)/);
      assert.deepEqual(await app.get('/health'), { ok: true });
    } finally {
      await app.stop();
      project.cleanup();
    }
  });
});
