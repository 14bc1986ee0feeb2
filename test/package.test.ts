/**
 * The published package works outside this repository: `npm pack` makes a tarball, a fresh app
 * project installs it (from the npm cache that `npm ci` filled), runs with the installed preload
 * `livepatch/register`, and the installed `livepatch` binary inspects and patches it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES, REPO, buildProject, createTokens, startApp, type AppProcess } from './helpers/project';

const dirs: string[] = [];
let app: AppProcess | undefined;
after(async () => {
  await app?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function npm(args: string[], cwd: string): string {
  // --ignore-scripts: dist/ is already built by `npm test`; rebuilding it here would race other tests.
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 240_000 });
}

test('the npm pack tarball installs into another project and patches it there', { timeout: 300_000 }, async () => {
  const packDir = mkdtempSync(join(tmpdir(), 'lp-pack-'));
  dirs.push(packDir);
  npm(['pack', '--ignore-scripts', '--pack-destination', packDir], REPO);
  const tarball = readdirSync(packDir).find((f) => f.endsWith('.tgz'));
  assert.ok(tarball, 'npm pack made a tarball');

  const root = mkdtempSync(join(tmpdir(), 'lp-installed-'));
  dirs.push(root);
  cpSync(join(FIXTURES, 'basic'), root, { recursive: true });
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', join(packDir, tarball), '@types/node@20'], root);
  buildProject(root);

  // The installed copy, not this repository, is what the app and the CLI run.
  const resolved = execFileSync(process.execPath, ['-p', "require.resolve('livepatch/register')"], { cwd: root, encoding: 'utf8' }).trim();
  assert.ok(resolved.startsWith(join(root, 'node_modules', 'livepatch')), resolved);

  const tokens = createTokens(root);
  app = await startApp(root, { env: { LIVEPATCH_TOKENS: tokens.file } });
  const bin = join(root, 'node_modules', '.bin', 'livepatch');
  const run = (args: string[], token: string) =>
    spawnSync(bin, args, { cwd: root, encoding: 'utf8', env: { ...process.env, LIVEPATCH_TOKEN: token }, timeout: 120_000 });

  const versions = run(['versions', app.agent!, '--json'], tokens.read);
  assert.equal(versions.status, 0, versions.stderr);
  const rows = JSON.parse(versions.stdout) as { module: string; version: number }[];
  assert.deepEqual(rows.find((r) => r.module === 'src/rates.ts')?.version, 1);

  writeFileSync(
    join(root, 'src', 'rates.ts'),
    readFileSync(join(root, 'src', 'rates.ts'), 'utf8').replace("'rates-v1'", "'rates-installed'"),
  );
  const applied = run(['apply', app.agent!, 'src/rates.ts', '-m', 'from the installed package'], tokens.patch);
  assert.equal(applied.status, 0, applied.stderr);
  assert.deepEqual(await app.get('/label'), { label: 'rates-installed' });
});
