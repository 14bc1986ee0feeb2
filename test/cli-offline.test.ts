/**
 * The built `livepatch` binary where no agent is needed or reachable: help and exit codes, usage
 * errors, the token rules (never argv; `token create` prints only the token), offline `check`
 * against a local project, connection failures (nothing listening, a peer that is not an agent, another
 * protocol version), and the delegated commands' entry points.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { readTokensFile } from '../shared';
import { CLI, createProject, runCli, type Project } from './helpers/project';

let project: Project;
let dir: string;

before(() => {
  project = createProject();
  dir = mkdtempSync(join(tmpdir(), 'lp-cli-offline-'));
});

after(() => {
  project?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

test('--help lists the commands and the exit codes and exits 0; no command is a usage error (2)', async () => {
  const h = await runCli(['--help']);
  assert.equal(h.code, 0);
  for (const cmd of [
    'status',
    'versions',
    'show',
    'diff',
    'check',
    'apply',
    'rollback',
    'history',
    'token',
    'eval',
    'repl',
    'attach',
    'audit',
  ]) {
    assert.match(h.stdout, new RegExp(`^  ${cmd} `, 'm'), cmd);
  }
  assert.match(h.stdout, /^ {2}5 {2}conflict/m);
  const sub = await runCli(['apply', '--help']);
  assert.equal(sub.code, 0);
  assert.match(sub.stdout, /--dry-run/);
  assert.match(sub.stdout, /^ {2}4 {2}cannot connect or timed out$/m);
  // A reader that went away (`| head -1`) must not make the CLI print a stack trace: close the
  // read end of stdout before the CLI has started, so its first write fails with EPIPE.
  const child = spawn(process.execPath, [CLI, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const status = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  assert.equal(stderr, '');
  assert.equal(status, 0);
  const none = await runCli([]);
  assert.equal(none.code, 2);
  const unknown = await runCli(['frobnicate', '--json']);
  assert.equal(unknown.code, 2);
  assert.equal(JSON.parse(unknown.stdout).error.code, 'LP_ERR_CLI_USAGE');
  assert.match(unknown.stderr, /^livepatch: unknown command 'frobnicate'/m);
});

test('token create prints the token and nothing else on stdout, writes a 0600 file, refuses duplicates (2)', async () => {
  const file = join(dir, 'tokens.json');
  const r = await runCli(['token', 'create', 'alice', '--role', 'patch', '--file', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^lp_[0-9a-f]{8}_[A-Za-z0-9_-]{43}\n$/);
  assert.match(r.stderr, /shown only this once/);
  const entries = readTokensFile(file).tokens;
  assert.deepEqual(
    entries.map((t) => [t.name, t.role]),
    [['alice', 'patch']],
  );
  assert.equal(entries[0]!.id, r.stdout.slice(3, 11));
  assert.ok(!readFileSync(file, 'utf8').includes(r.stdout.trim()), 'the secret is not stored');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const dup = await runCli(['token', 'create', 'alice', '--role', 'read', '--file', file]);
  assert.equal(dup.code, 2);
  assert.equal(dup.stdout, '');
  assert.match(dup.stderr, /already exists/);
  const badRole = await runCli(['token', 'create', 'bob', '--role', 'root', '--file', file]);
  assert.equal(badRole.code, 2);
  assert.match(badRole.stderr, /Allowed choices are read, patch, admin/);
});

test('a secret is never taken from argv, and a missing token is an auth error (3)', async () => {
  const t = await runCli(['status', '127.0.0.1:1', '--token', 'lp_00000000_x']);
  assert.equal(t.code, 2);
  assert.match(t.stderr, /unknown option '--token'/);
  const none = await runCli(['status', '127.0.0.1:1', '--json'], { env: { LIVEPATCH_TOKEN: undefined } });
  assert.equal(none.code, 3);
  assert.deepEqual(JSON.parse(none.stdout), {
    error: { code: 'LP_ERR_AUTH_NO_TOKEN', message: 'No token: set LIVEPATCH_TOKEN or pass --token-file', retryable: false },
  });
});

test('nothing listening, or a bad address: one-line errors, exit 4 and 2', async () => {
  const env = { LIVEPATCH_TOKEN: 'lp_00000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' };
  const r = await runCli(['versions', '127.0.0.1:1'], { env });
  assert.equal(r.code, 4);
  assert.equal(r.stdout, '');
  assert.match(
    r.stderr,
    /^livepatch: cannot connect to 127\.0\.0\.1:1: nothing is listening there \(is the app running with the agent enabled\?\)\n$/,
  );
  const u = await runCli(['status', `unix:${join(dir, 'nope.sock')}`, '--json'], { env });
  assert.equal(u.code, 4);
  assert.equal(JSON.parse(u.stdout).error.retryable, true);
  const bad = await runCli(['apply', 'not-an-address', 'x.ts'], { env });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid agent address "not-an-address"/);
  const noId = await runCli(['apply', '127.0.0.1:1', 'src/rates.ts', '--skip-applied'], { env, cwd: project.root });
  assert.equal(noId.code, 2);
  assert.match(noId.stderr, /--skip-applied needs a patch id/);
});

test('a wrong host or an agent of another protocol version: one line saying what to do, exit 4', async () => {
  const env = { LIVEPATCH_TOKEN: 'lp_00000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' };
  // Stand-in peers: a plain HTTP server (e.g. the app's own port), a WebSocket service that is not an
  // agent, and an "agent" announcing protocol 99.
  const web = createServer((_req, res) => res.end('hello'));
  const other = new WebSocketServer({ noServer: true });
  const future = new WebSocketServer({ noServer: true });
  const wsHost = (wss: WebSocketServer, greet: (ws: WebSocket) => void) => {
    const s = createServer();
    s.on('upgrade', (req, sock, head) => wss.handleUpgrade(req, sock, head, greet));
    return s;
  };
  const otherSrv = wsHost(other, (ws) => ws.send('{"type":"chat","text":"hi"}'));
  const futureSrv = wsHost(future, (ws) =>
    ws.send(JSON.stringify({ type: 'hello', protocol: 99, agentVersion: '9.0.0', auth: 'scram-sha256', nonce: 'n'.repeat(32) })),
  );
  const servers = [web, otherSrv, futureSrv];
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))));
  const addr = (s: typeof web) => `127.0.0.1:${(s.address() as AddressInfo).port}`;
  try {
    const w = await runCli(['status', addr(web)], { env });
    assert.equal(w.code, 4);
    assert.equal(
      w.stderr,
      `livepatch: ${addr(web)} is not a livepatch agent (it answered HTTP 200): use the address the agent printed at start ("livepatch: agent listening on HOST:PORT"), not the app's own port\n`,
    );
    const o = await runCli(['status', addr(otherSrv), '--json'], { env });
    assert.equal(o.code, 4);
    assert.match(JSON.parse(o.stdout).error.message, /is not a livepatch agent \(it did not greet like one\)/);
    const f = await runCli(['status', addr(futureSrv)], { env });
    assert.equal(f.code, 4);
    assert.equal(f.stderr, `livepatch: the agent at ${addr(futureSrv)} speaks protocol 99, this client speaks 1: upgrade the older side\n`);
  } finally {
    for (const c of [...other.clients, ...future.clients]) c.terminate();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
});

test('--timeout bounds a handshake that never completes: exit 4', async () => {
  // A TCP peer that accepts and then says nothing.
  const silent = createNetServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const target = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
  try {
    const r = await runCli(['status', target, '--timeout', '300', '--json'], {
      env: { LIVEPATCH_TOKEN: 'lp_00000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' },
    });
    assert.equal(r.code, 4, r.stderr);
    assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_CONN_TIMEOUT');
    const bad = await runCli(['status', target, '--timeout', 'soon']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /option '--timeout <ms>' argument 'soon' is invalid/);
  } finally {
    silent.close();
  }
});

test('offline check type-checks against the local project: ok exits 0, a type error exits 1 in tsc form', async () => {
  const ok = await runCli(['check', 'src/rates.ts'], { cwd: project.root });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^ok: the patch type-checks against the local project/);
  project.write('src/quote.ts', readFileSync(join(project.root, 'src/quote.ts'), 'utf8').replace('rate(currency)', 'rate(currency, 2)'));
  const bad = await runCli(['check', 'src/quote.ts', '--json'], { cwd: project.root });
  assert.equal(bad.code, 1, bad.stderr);
  assert.match(bad.stderr, /^src\/quote\.ts\(4,\d+\): error TS2554: Expected 1 arguments?, but got 2\.$/m);
  const j = JSON.parse(bad.stdout);
  assert.equal(j.ok, false);
  assert.equal(j.error.code, 'LP_ERR_PATCH_TYPE');
  assert.ok(
    j.diagnostics.some((d: { file: string; line: number; code: number }) => d.file === 'src/quote.ts' && d.line === 4 && d.code === 2554),
  );
  writeFileSync(join(dir, 'loose.ts'), 'export const x = 1;\n');
  const noConfig = await runCli(['check', 'loose.ts'], { cwd: dir });
  assert.equal(noConfig.code, 2);
  assert.match(noConfig.stderr, /^livepatch: no tsconfig\.json in .*: run offline check in the project root, pass --root DIR/m);
  const elsewhere = await runCli(['check', join(project.root, 'src/quote.ts'), '--root', dir]);
  assert.equal(elsewhere.code, 2);
  assert.match(elsewhere.stderr, /outside the project root/);
});

test('eval, repl and attach are wired to their entry points', async () => {
  for (const args of [
    ['eval', '127.0.0.1:1', '1 + 1'],
    ['repl', '127.0.0.1:1'],
    ['attach', '127.0.0.1:1'],
  ]) {
    const r = await runCli(args, {
      env: { LIVEPATCH_TOKEN: 'lp_00000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' },
      timeoutMs: 20_000,
    });
    // The entry point ran and could not connect.
    assert.equal(r.code, 4, `${args[0]}: ${r.code} ${r.stderr}`);
  }
});
