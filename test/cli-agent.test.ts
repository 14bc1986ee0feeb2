/**
 * The built `livepatch` binary against a real agent in a child app process: every agent command, the
 * --json shapes scripts rely on, and the exit codes 0..5 as a user meets them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
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
const QUOTE_BROKEN = `import { rate } from './rates';

export function quote(currency: string, amount: number): number {
  return rate(currency, amount);
}

export function tag(): string {
  return 'B2';
}

export class Counter {
  count = 0;
  hit(): number {
    return ++this.count;
  }
  label(): string {
    return 'v2';
  }
}
`;

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
/** Run the CLI in the project dir with a token of `role`. */
const cli = (args: string[], role: 'read' | 'patch' | 'admin' = 'admin') => runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens[role] } });

before(async () => {
  project = createProject();
  tokens = createTokens(project.root);
  // Patch sources live outside src/ so the app's own tree stays the deployed one.
  project.write('patch/src/rates.ts', RATES_V2);
  project.write('broken/src/quote.ts', QUOTE_BROKEN);
  app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file } });
  agent = app.agent!;
});

after(async () => {
  await app?.stop();
  project?.cleanup();
});

test('status and versions (read token) show the deployed program; --json has the documented shapes', async () => {
  const s = await cli(['status', agent], 'read');
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, /^generation +1$/m);
  assert.match(s.stdout, /^modules +4 \(none patched\)$/m);
  const sj = JSON.parse((await cli(['status', agent, '--json'], 'read')).stdout);
  assert.equal(sj.currentGeneration, 1);
  assert.equal(sj.pid, app.child.pid);
  assert.deepEqual(sj.patchedModules, []);

  const v = await cli(['versions', agent], 'read');
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /^MODULE +VERSION +GENERATION +HASH +PATCHED$/m);
  assert.match(v.stdout, /^src\/rates\.ts +1 +1 +[0-9a-f]{12} +no$/m);
  const vj = JSON.parse((await cli(['versions', agent, '--json'], 'read')).stdout);
  const rates = vj.find((r: { module: string }) => r.module === 'src/rates.ts');
  const deployed = readFileSync(join(project.root, 'src/rates.ts'), 'utf8');
  assert.deepEqual(rates, { module: 'src/rates.ts', version: 1, generation: 1, hash: sha256(deployed), patched: false });
});

test('show prints the live source; diff prints a unified diff against it', async () => {
  const s = await cli(['show', agent, 'src/rates.ts'], 'read');
  assert.equal(s.code, 0, s.stderr);
  assert.equal(s.stdout, readFileSync(join(project.root, 'src/rates.ts'), 'utf8'));
  const d = await cli(['diff', agent, 'patch/src/rates.ts', '--root', 'patch'], 'read');
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /^--- a\/src\/rates\.ts\n\+\+\+ b\/src\/rates\.ts\n@@/m);
  assert.match(d.stdout, /^-export const RATES_LABEL = 'rates-v1';$/m);
  assert.match(d.stdout, /^\+export const RATES_LABEL = 'rates-v2';$/m);
});

test('a patch with type errors is rejected (exit 1) in tsc form, with diagnostics under --json, and nothing is committed', async () => {
  const c = await cli(['check', agent, 'broken/src/quote.ts', '--root', 'broken'], 'patch');
  assert.equal(c.code, 1, c.stderr);
  assert.match(c.stderr, /^src\/quote\.ts\(4,\d+\): error TS2554: Expected 1 arguments?, but got 2\.$/m);
  const a = await cli(['apply', agent, 'broken/src/quote.ts', '--root', 'broken', '--json'], 'patch');
  assert.equal(a.code, 1, a.stderr);
  const j = JSON.parse(a.stdout);
  assert.equal(j.ok, false);
  assert.equal(j.committed, false);
  assert.equal(j.error.code, 'LP_ERR_PATCH_TYPE');
  assert.equal(typeof j.error.retryable, 'boolean');
  assert.ok(j.diagnostics.some((d: { file: string; code: number }) => d.file === 'src/quote.ts' && d.code === 2554), a.stdout);
  assert.match(a.stderr, /src\/quote\.ts\(4,\d+\): error TS2554/);
  const s = JSON.parse((await cli(['status', agent, '--json'])).stdout);
  assert.equal(s.currentGeneration, 1);
});

test('a verify hook that throws vetoes the patch (exit 1); a dry run passes and commits nothing', async () => {
  project.write('verify-eur.ts', "import { rate } from './src/rates';\nexport function eurRate(): void {\n  if (rate('EUR') !== 1.5) throw new Error('EUR rate is ' + rate('EUR'));\n}\n");
  const r = await cli(['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '--verify', 'verify-eur.ts', '--json'], 'patch');
  assert.equal(r.code, 1, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.error.code, 'LP_ERR_PATCH_VERIFY');
  assert.match(r.stderr, /^livepatch: verify function "eurRate" failed: .*EUR rate is 1\.2/m);
  assert.equal((await app.get('/label')).label, 'rates-v1');
  const dry = await cli(['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '--dry-run', '--json'], 'patch');
  assert.equal(dry.code, 0, dry.stderr);
  const dj = JSON.parse(dry.stdout);
  assert.equal(dj.dryRun, true);
  assert.equal(dj.committed, false);
  assert.equal(dj.hosts[0].state, 'dry-run');
  assert.equal((await app.get('/label')).label, 'rates-v1', 'a dry run commits nothing');
});

test('progress for a slow op appears on a terminal\'s stderr and never in a pipe', async () => {
  // The verify hook waits 1.5 s, so the op outlasts the one-second threshold for progress lines.
  project.write('verify-slow.ts', 'export async function settle(): Promise<void> {\n  await new Promise((r) => setTimeout(r, 1500));\n}\n');
  const args = ['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '--verify', 'verify-slow.ts', '--dry-run'];
  const piped = await cli(args, 'patch');
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(piped.stderr, '', 'nothing decorative when stderr is not a terminal');
  // script(1) runs the CLI on a real pseudo-terminal.
  const line = [CLI, ...args].map((a) => `'${a}'`).join(' ');
  const tty = spawnSync('script', ['-qfec', `${process.execPath} ${line}`, '/dev/null'], { cwd: project.root, env: { ...process.env, LIVEPATCH_TOKEN: tokens.patch }, encoding: 'utf8', timeout: 60_000 });
  assert.equal(tty.status, 0, tty.stdout);
  assert.ok(tty.stdout.includes(`\r\x1b[2Klivepatch: ${agent}: `), JSON.stringify(tty.stdout));
  assert.match(tty.stdout, /\r\x1b\[2K.*dry-run +dry run passed/s, 'the progress line is cleared before the result');
});

test('check passes and apply commits a good patch (exit 0); the app serves the new code', async () => {
  const c = await cli(['check', agent, 'patch/src/rates.ts', '--root', 'patch'], 'patch');
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /^ok: the patch type-checks/);
  const a = await cli(['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '-m', 'eur rate', '--id', 'fix-1', '--json'], 'patch');
  assert.equal(a.code, 0, a.stderr);
  const j = JSON.parse(a.stdout);
  assert.equal(j.ok, true);
  assert.equal(j.committed, true);
  assert.equal(j.hosts[0].target, agent);
  assert.equal(j.hosts[0].state, 'committed');
  assert.equal(j.hosts[0].result.generation, 2);
  assert.deepEqual((await app.get('/label')).label, 'rates-v2');
  const v = JSON.parse((await cli(['versions', agent, '--json'], 'read')).stdout);
  assert.deepEqual(v.find((r: { module: string }) => r.module === 'src/rates.ts'), { module: 'src/rates.ts', version: 2, generation: 2, hash: sha256(RATES_V2), patched: true });
  const old = await cli(['show', agent, 'src/rates.ts', '--generation', '1'], 'read');
  assert.match(old.stdout, /rates-v1/);
});

test('conflicts exit 5: a stale base hash, and a patch id that was already applied', async () => {
  const stale = join(project.root, 'stale.json');
  writeFileSync(stale, JSON.stringify({ files: { 'src/rates.ts': RATES_V2.replace('1.2', '1.3') }, base: { 'src/rates.ts': sha256('something else') } }));
  const c = await cli(['apply', agent, stale, '--json'], 'patch');
  assert.equal(c.code, 5, c.stderr);
  assert.equal(JSON.parse(c.stdout).error.code, 'LP_ERR_PATCH_CONFLICT');
  const d = await cli(['apply', agent, 'patch/src/rates.ts', '--root', 'patch', '--id', 'fix-1'], 'patch');
  assert.equal(d.code, 5, d.stderr);
  assert.match(d.stderr, /^livepatch: .*already applied/m);
  assert.equal((await app.get('/label')).label, 'rates-v2');
});

test('history lists the generations; rollback restores the previous one', async () => {
  const h = await cli(['history', agent], 'read');
  assert.equal(h.code, 0, h.stderr);
  assert.match(h.stdout, /^2 +patch +\S+ \S+ +patcher +current +src\/rates\.ts +eur rate$/m);
  assert.match(h.stdout, /^1 +deploy/m);
  const r = await cli(['rollback', agent, '--json'], 'patch');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).generation, 3);
  assert.equal((await app.get('/label')).label, 'rates-v1');
  const hj = JSON.parse((await cli(['history', agent, '--json'], 'read')).stdout);
  assert.ok(Array.isArray(hj));
  assert.equal(hj.find((g: { generation: number }) => g.generation === 3).kind, 'rollback');
  const bad = await cli(['rollback', agent, '--to', '99'], 'patch');
  assert.equal(bad.code, 1, bad.stderr);
});

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

test('audit verify (admin) reports an intact chain; usage errors exit 2', async () => {
  const a = await cli(['audit', 'verify', agent, '--json']);
  assert.equal(a.code, 0, a.stderr);
  const j = JSON.parse(a.stdout);
  assert.equal(j.ok, true);
  assert.ok(j.records > 0);
  const u = await cli(['show', agent]);
  assert.equal(u.code, 2);
  assert.match(u.stderr, /missing required argument/);
  const g = await cli(['versions', agent, '--generation', 'zero', '--json']);
  assert.equal(g.code, 2);
  assert.equal(JSON.parse(g.stdout).error.code, 'LP_ERR_CLI_USAGE');
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

test('a patch set over the agent\'s frame limit is a usage error (2) and the agent keeps serving', async () => {
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

test('when the agent is gone, commands exit 4 with a one-line error', async () => {
  await app.stop();
  const s = await cli(['status', agent, '--json']);
  assert.equal(s.code, 4, s.stderr);
  assert.equal(JSON.parse(s.stdout).error.code, 'LP_ERR_CONN_REFUSED');
  assert.equal(s.stderr.trim().split('\n').length, 1);
  assert.match(s.stderr, /^livepatch: cannot connect to .*is the app running/);
});
