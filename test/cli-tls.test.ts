/**
 * `--tls` and `--ca` against a real agent serving wss with a self-signed certificate (made with the
 * system's openssl): trusted with --ca, a clear "not trusted" error without it, a hint to add --tls
 * when it is missing, and an unreadable CA file as a usage error.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { selfSignedCert } from './helpers/tls';

// The certificate is made with the system's openssl; without it there is nothing to test here.
const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0;
const opts = { skip: HAVE_OPENSSL ? false : 'openssl is not installed' };

let project: Project;
let tokens: Tokens;
let app: AppProcess;
let cert: string;

before(async () => {
  if (!HAVE_OPENSSL) return;
  project = createProject();
  tokens = createTokens(project.root);
  cert = join(project.root, 'agent-cert.pem');
  const key = join(project.root, 'agent-key.pem');
  selfSignedCert(key, cert);
  app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_TLS_CERT: cert, LIVEPATCH_TLS_KEY: key } });
});

after(async () => {
  await app?.stop();
  project?.cleanup();
});

const cli = (args: string[]) => runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.read }, timeoutMs: 30_000 });

test('--tls with --ca trusting the agent certificate connects', opts, async () => {
  const r = await cli(['versions', app.agent!, '--tls', '--ca', cert, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(JSON.parse(r.stdout).some((m: { module: string }) => m.module === 'src/rates.ts'));
});

test('an untrusted certificate, a missing --tls and an unreadable CA file say what to do', opts, async () => {
  // Node's own text for the TLS failure differs between releases (Node 24 appends a hint about --use-system-ca), so
  // the test pins what livepatch owns: the exit code, the error code and the advice around Node's text.
  const untrusted = await cli(['status', app.agent!, '--tls', '--json']);
  assert.equal(untrusted.code, 4);
  assert.equal(JSON.parse(untrusted.stdout).error.code, 'LP_ERR_CONN_REFUSED');
  assert.match(
    untrusted.stderr,
    /^livepatch: cannot connect to 127\.0\.0\.1:\d+: .+: the agent's certificate is not trusted; pass --ca FILE with its certificate or CA\n$/,
  );
  const plain = await cli(['status', app.agent!]);
  assert.equal(plain.code, 4);
  assert.match(plain.stderr, /\(if the agent serves TLS, add --tls\)\n$/);
  const noCa = await cli(['status', app.agent!, '--tls', '--ca', join(project.root, 'missing.pem')]);
  assert.equal(noCa.code, 2);
  assert.match(noCa.stderr, /^livepatch: cannot read CA file .*missing\.pem: ENOENT\n$/);
});
