/**
 * The built `livepatch` binary against a real agent in a child app process: the inspect and patch
 * commands in the order an operator uses them, their --json shapes, and exit codes 0, 1, 2 and 5.
 * Access, limits, progress, eval/repl and exit codes 3 and 4: cli-access.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { sha256 } from '../shared/hash';

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

/** Run the CLI in the project dir with a token of `role`. */
const cli = (args: string[], role: 'read' | 'patch' | 'admin' = 'admin') =>
  runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens[role] } });

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
  assert.ok(Array.isArray(vj), 'versions --json stays an array');
  const { health: _h, ...rates } = vj.find((r: { module: string }) => r.module === 'src/rates.ts');
  const deployed = readFileSync(join(project.root, 'src/rates.ts'), 'utf8');
  assert.deepEqual(rates, { module: 'src/rates.ts', version: 1, generation: 1, hash: sha256(deployed), patched: false });
});

test("versions carries the listed generation's health on each row (--json) and on one line after the table", async () => {
  await app.get('/label');
  await app.get('/label');
  const vj = JSON.parse((await cli(['versions', agent, '--json'], 'read')).stdout);
  const sj = JSON.parse((await cli(['status', agent, '--json'], 'read')).stdout);
  const current = sj.liveGenerations.find((g: { current: boolean }) => g.current);
  assert.ok(current?.health, 'status reports the current generation health');
  assert.ok(current.health.requests >= 2 && current.health.status['2xx'] >= 2, JSON.stringify(current.health));
  assert.ok(vj.length > 0);
  for (const row of vj) assert.deepEqual(row.health, current.health, `${row.module}: the current generation's health`);

  const v = await cli(['versions', agent], 'read');
  assert.equal(v.code, 0, v.stderr);
  const line = new RegExp(
    `^health of the current generation: ${current.health.requests} requests \\(2xx ${current.health.status['2xx']}, 3xx 0, 4xx \\d+, 5xx 0\\), ` +
      'threw 0, destroyed 0, uncaught 0, rejections 0, p50 [\\d.]+ ms, p99 [\\d.]+ ms, error rate 0\\.00 %$',
    'm',
  );
  assert.match(v.stdout, line);
  const g1 = await cli(['versions', agent, '--generation', '1'], 'read');
  assert.match(g1.stdout, /^health of generation 1: /m);
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
  const dj = JSON.parse((await cli(['diff', agent, 'patch/src/rates.ts', '--root', 'patch', '--json'], 'read')).stdout);
  assert.deepEqual(
    dj.map((m: { module: string; isNew: boolean; changed: boolean }) => [m.module, m.isNew, m.changed]),
    [['src/rates.ts', false, true]],
  );
  assert.match(dj[0].diff, /^--- a\/src\/rates\.ts/);
  const missing = await cli(['show', agent, 'src/nope.ts', '--json'], 'read');
  assert.equal(missing.code, 1, missing.stderr);
  assert.equal(JSON.parse(missing.stdout).error.code, 'LP_ERR_PATCH_UNKNOWN_MODULE');
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
  assert.ok(
    j.diagnostics.some((d: { file: string; code: number }) => d.file === 'src/quote.ts' && d.code === 2554),
    a.stdout,
  );
  assert.match(a.stderr, /src\/quote\.ts\(4,\d+\): error TS2554/);
  const s = JSON.parse((await cli(['status', agent, '--json'])).stdout);
  assert.equal(s.currentGeneration, 1);
});

test('a verify hook that throws vetoes the patch (exit 1); a dry run passes and commits nothing', async () => {
  project.write(
    'verify-eur.ts',
    "import { rate } from './src/rates';\nexport function eurRate(): void {\n  if (rate('EUR') !== 1.5) throw new Error('EUR rate is ' + rate('EUR'));\n}\n",
  );
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
  const { health, ...row } = v.find((r: { module: string }) => r.module === 'src/rates.ts');
  assert.deepEqual(row, { module: 'src/rates.ts', version: 2, generation: 2, hash: sha256(RATES_V2), patched: true });
  // The new generation's own figures: the request above is counted against generation 2.
  assert.equal(health?.requests, 1, JSON.stringify(health));
  // --generation N: that generation's figures while it is live, none once it is not.
  const live = JSON.parse((await cli(['status', agent, '--json'], 'read')).stdout).liveGenerations as { generation: number }[];
  const v1 = JSON.parse((await cli(['versions', agent, '--generation', '1', '--json'], 'read')).stdout);
  const gen1Live = live.some((g) => g.generation === 1);
  assert.equal(
    v1.every((r: { health?: unknown }) => r.health !== undefined),
    gen1Live,
  );
  if (!gen1Live) assert.ok(v1.every((r: { health?: unknown }) => r.health === undefined));
  const old = await cli(['show', agent, 'src/rates.ts', '--generation', '1'], 'read');
  assert.match(old.stdout, /rates-v1/);
});

test('conflicts exit 5: a stale base hash, and a patch id that was already applied', async () => {
  const stale = join(project.root, 'stale.json');
  writeFileSync(
    stale,
    JSON.stringify({ files: { 'src/rates.ts': RATES_V2.replace('1.2', '1.3') }, base: { 'src/rates.ts': sha256('something else') } }),
  );
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
