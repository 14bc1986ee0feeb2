/**
 * The built `livepatch` binary against a real agent, continued from cli-agent.test.ts: permissions
 * and authentication (exit 3), tokens created by the CLI, the frame limit, progress on a real
 * terminal, eval, repl and attach through the binary, and a vanished agent (exit 4).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';

let project: Project;
let tokens: Tokens;
let app: AppProcess;
let agent: string;

const RATES_V2 = `export const RATES_LABEL = 'rates-v2';

export function rate(currency: string): number {
  return currency === 'EUR' ? 1.2 : 1;
}

export function tag(): string {
  return 'A2';
}
`;

/** Run the CLI in the project dir with a token of `role`. */
const cli = (args: string[], role: 'read' | 'patch' | 'admin' = 'admin') =>
  runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens[role] } });

before(async () => {
  project = createProject();
  tokens = createTokens(project.root);
  project.write('patch/src/rates.ts', RATES_V2);
  app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file } });
  agent = app.agent!;
});

after(async () => {
  await app?.stop();
  project?.cleanup();
});

test(
  "progress for a slow op appears on a terminal's stderr and never in a pipe",
  { skip: spawnSync('script', ['--version']).status === 0 ? false : 'script(1) is not installed' },
  async () => {
    // The verify hook waits 1.5 s, so the op outlasts the one-second threshold for progress lines.
    project.write(
      'verify-slow.ts',
      'export async function settle(): Promise<void> {\n  await new Promise((r) => setTimeout(r, 1500));\n}\n',
    );
    const args = ['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '--verify', 'verify-slow.ts', '--dry-run'];
    const piped = await cli(args, 'patch');
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stderr, '', 'nothing decorative when stderr is not a terminal');
    // script(1) runs the CLI on a real pseudo-terminal.
    const line = [CLI, ...args].map((a) => `'${a}'`).join(' ');
    const tty = spawnSync('script', ['-qfec', `${process.execPath} ${line}`, '/dev/null'], {
      cwd: project.root,
      env: { ...process.env, LIVEPATCH_TOKEN: tokens.patch },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(tty.status, 0, tty.stdout);
    assert.ok(tty.stdout.includes(`\r\x1b[2Klivepatch: ${agent}: `), JSON.stringify(tty.stdout));
    // eslint-disable-next-line no-control-regex -- the terminal's erase-line sequence is what is checked
    assert.match(tty.stdout, /\r\x1b\[2K.*dry-run +dry run passed/s, 'the progress line is cleared before the result');
  },
);

test('permission and authentication failures exit 3; a read token cannot patch', async () => {
  const a = await cli(['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '--json'], 'read');
  assert.equal(a.code, 3, a.stderr);
  assert.equal(JSON.parse(a.stdout).error.code, 'LP_ERR_AUTH_FORBIDDEN');
  const audit = await cli(['audit', 'verify', agent], 'patch');
  assert.equal(audit.code, 3, audit.stderr);
  const wrong = await runCli(['status', agent], { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.read.slice(0, -4) + 'AAAA' } });
  assert.equal(wrong.code, 3, wrong.stderr);
  assert.match(wrong.stderr, /^livepatch: /);
  assert.doesNotMatch(wrong.stderr, /\n\s+at /, 'no stack trace');
});

test('token files: a token created by the CLI is accepted by the running agent', async () => {
  const t = await runCli(['token', 'create', 'ci-bot', '--role', 'read', '--file', tokens.file], { cwd: project.root });
  assert.equal(t.code, 0, t.stderr);
  const token = t.stdout.trim();
  assert.match(t.stdout, /^lp_[0-9a-f]{8}_[A-Za-z0-9_-]{43}\n$/);
  const tokenFile = join(project.root, 'ci.token');
  writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
  const s = await runCli(['status', agent, '--token-file', tokenFile], { cwd: project.root, env: { LIVEPATCH_TOKEN: undefined } });
  assert.equal(s.code, 0, s.stderr);
});

test("a patch set over the agent's frame limit is a usage error (2) and the agent keeps serving", async () => {
  project.write('big/src/rates.ts', `export const big = '${'a'.repeat(9 * 1024 * 1024)}';\n`);
  const r = await cli(['apply', agent, 'big/src/rates.ts', '--root', 'big', '--json'], 'patch');
  assert.equal(r.code, 2, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.error.code, 'LP_ERR_LIMIT_FRAME');
  assert.equal(j.error.retryable, false);
  assert.match(r.stderr, /^livepatch: the request is larger than the agent accepts/m);
  assert.equal((await cli(['status', agent], 'read')).code, 0);
});

test('eval and repl run through the CLI against the live process (read token)', async () => {
  const e = await cli(['eval', agent, '1 + 1'], 'read');
  assert.equal(e.code, 0, e.stderr);
  assert.equal(e.stdout, '2\n');
  const bad = await cli(['eval', agent, 'const x: number = "s"'], 'read');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /error TS2322/);
  const r = await runCli(['repl', agent], { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.read }, input: '2 * 21\n.exit\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\b42\b/);
});

test(
  "attach opens the terminal UI on a real pty, connected with the token's name and role, and q quits (exit 0)",
  { skip: spawnSync('script', ['--version']).status === 0 ? false : 'script(1) is not installed' },
  async () => {
    const child = spawn('script', ['-qfec', `stty cols 120 rows 40; '${process.execPath}' '${CLI}' attach ${agent}`, '/dev/null'], {
      cwd: project.root,
      env: { ...process.env, LIVEPATCH_TOKEN: tokens.read, TERM: 'xterm' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    let quitSent = false;
    child.stdout!.on('data', (d: Buffer) => {
      screen += d.toString();
      // Quit once the UI shows it is connected (then the agent answered the handshake as this token).
      if (!quitSent && /● connected/.test(screen)) {
        quitSent = true;
        child.stdin!.write('q');
      }
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 45_000);
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    clearTimeout(killer);
    assert.ok(quitSent, `the UI never showed "connected":\n${screen.slice(0, 2000)}`);
    assert.equal(code, 0);
    assert.match(screen, /reader \(read\)/);
  },
);

test('when the agent is gone, commands exit 4 with a one-line error', async () => {
  await app.stop();
  const s = await cli(['status', agent, '--json']);
  assert.equal(s.code, 4, s.stderr);
  assert.equal(JSON.parse(s.stdout).error.code, 'LP_ERR_CONN_REFUSED');
  assert.equal(s.stderr.trim().split('\n').length, 1);
  assert.match(s.stderr, /^livepatch: cannot connect to .*is the app running/);
});
