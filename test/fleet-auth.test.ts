/**
 * Fleet roles as etcd permissions (docs/fleet.md#roles-etcd-users-and-permissions), on a private etcd
 * with TLS and authentication on (started with scripts/start-etcd.sh, so the shared test etcd keeps
 * both off; the certificate is made with the system's openssl): agent and CLI connect with
 * LIVEPATCH_FLEET_CA; without it the CLI cannot connect (exit 4); the agent's user can register, stage
 * and ack but cannot propose a rollout; a client without credentials is refused (exit 3); the
 * patcher's user applies, and the agent commits; with --canary and --watch the agent's user writes its
 * watch verdict under watch/.
 * Runs where the fleet tests run (LIVEPATCH_TEST_ETCD set, or under CI, which must have etcd).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3, Range } from 'etcd3';
import { createProject, createTokens, REPO, runCli, startApp, type AppProcess, type Project } from './helpers/project';
import { skipWithoutEtcd } from './helpers/etcd';
import { selfSignedCert } from './helpers/tls';
import { QUOTE_PATCH } from './cli-fleet-fixture';

const skip = skipWithoutEtcd;
const NAME = 'shop';
const P = `livepatch/fleets/${NAME}/`;
let dir: string;
let endpoint: string;
let project: Project;
let app: AppProcess | undefined;

const ca = () => join(dir, 'etcd-cert.pem');
const creds = (user: string) => ({
  LIVEPATCH_FLEET_CA: ca(),
  LIVEPATCH_FLEET_USER: user,
  LIVEPATCH_FLEET_PASSWORD_FILE: join(dir, `${user}.pw`),
});

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'lp-etcd-auth-'));
  const key = join(dir, 'etcd-key.pem');
  selfSignedCert(key, ca());
  endpoint = execFileSync('bash', [join(REPO, 'scripts', 'start-etcd.sh'), join(dir, 'etcd')], {
    encoding: 'utf8',
    env: { ...process.env, ETCD_CERT: ca(), ETCD_KEY: key },
  }).trim();
  const root = new Etcd3({ hosts: `https://${endpoint}`, credentials: { rootCertificate: readFileSync(ca()) } });
  try {
    for (const u of ['root', 'agent', 'alice']) writeFileSync(join(dir, `${u}.pw`), `${u}-secret\n`, { mode: 0o600 });
    await root.user('root').create('root-secret');
    await root.user('root').addRole('root');
    const agent = await root.role('shop-agent').create();
    await agent.grant({ permission: 'Read', range: Range.prefix(P) });
    for (const k of ['members/', 'acks/', 'decision/', 'watch/'])
      await agent.grant({ permission: 'Readwrite', range: Range.prefix(P + k) });
    const patch = await root.role('shop-patch').create();
    await patch.grant({ permission: 'Readwrite', range: Range.prefix(P) });
    await (await root.user('agent').create('agent-secret')).addRole('shop-agent');
    await (await root.user('alice').create('alice-secret')).addRole('shop-patch');
    await root.auth.authEnable({});
  } finally {
    root.close();
  }
  project = createProject();
  const tokens = createTokens(project.root);
  project.write('fix/src/quote.ts', QUOTE_PATCH);
  app = await startApp(project.root, {
    env: {
      LIVEPATCH_TOKENS: tokens.file,
      LIVEPATCH_FLEET: `etcd://${endpoint}/${NAME}`,
      LIVEPATCH_FLEET_LEASE_TTL: '2',
      ...creds('agent'),
    },
  });
});

after(async () => {
  await app?.stop();
  project?.cleanup();
  if (dir) {
    try {
      process.kill(Number(readFileSync(join(dir, 'etcd', 'pid'), 'utf8')));
    } catch {
      // not started or gone
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

async function waitMember(): Promise<any> {
  for (let i = 0; i < 200; i++) {
    const r = await runCli(['status', `etcd://${endpoint}/${NAME}`, '--json'], { env: creds('alice') });
    if (r.code === 0 && JSON.parse(r.stdout).members.length === 1) return JSON.parse(r.stdout);
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`the agent did not register:\n${app?.stderr()}`);
}

test('etcd over TLS with roles: agents register but cannot propose, no credentials is refused, the patcher applies', { skip }, async () => {
  const s = await waitMember();
  assert.equal(s.members[0].address, app!.agent);
  const url = `etcd://${endpoint}/${NAME}`;
  const plain = await runCli(['status', url, '--json'], {
    env: { LIVEPATCH_FLEET_USER: 'alice', LIVEPATCH_FLEET_PASSWORD_FILE: join(dir, 'alice.pw') },
  });
  assert.equal(plain.code, 4, 'without LIVEPATCH_FLEET_CA the CLI speaks plain gRPC to a TLS port: no connection');
  assert.equal(JSON.parse(plain.stdout).error.code, 'LP_ERR_FLEET_UNREACHABLE');
  const anon = await runCli(['status', url, '--json'], { env: { LIVEPATCH_FLEET_CA: ca() } });
  assert.equal(anon.code, 3, anon.stdout + anon.stderr);
  assert.equal(JSON.parse(anon.stdout).error.code, 'LP_ERR_FLEET_DENIED');
  const asAgent = await runCli(['apply', url, 'fix/src/quote.ts', '--root', 'fix', '--json'], { cwd: project.root, env: creds('agent') });
  assert.equal(asAgent.code, 3, asAgent.stdout + asAgent.stderr);
  assert.equal(JSON.parse(asAgent.stdout).error.code, 'LP_ERR_FLEET_DENIED');
  const asAlice = await runCli(['apply', url, 'fix/src/quote.ts', '--root', 'fix', '--deadline', '180000', '--json'], {
    cwd: project.root,
    env: creds('alice'),
    timeoutMs: 200_000,
  });
  assert.equal(asAlice.code, 0, asAlice.stdout + asAlice.stderr);
  assert.equal(JSON.parse(asAlice.stdout).members[0].state, 'committed');
  assert.equal((await app!.get('/mix')).b, 'B2');
});

test('with roles, an agent writes its canary watch verdict under watch/ and the canary watch passes', { skip }, async () => {
  await waitMember();
  project!.write('fix3/src/quote.ts', QUOTE_PATCH.replace("'B2'", "'B3'"));
  const url = `etcd://${endpoint}/${NAME}`;
  const r = await runCli(
    ['apply', url, 'fix3/src/quote.ts', '--root', 'fix3', '--canary', '1', '--watch', '2s', '--deadline', '90000', '--json'],
    { cwd: project!.root, env: creds('alice'), timeoutMs: 200_000 },
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.members[0].canary, true);
  assert.equal(j.members[0].state, 'committed');
  // No requests in the window: nothing to judge, so kept; what matters here is that the verdict reached etcd.
  assert.equal(j.members[0].watch.verdict, 'kept');
  assert.equal((await app!.get('/mix')).b, 'B3');
});
