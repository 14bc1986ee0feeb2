/**
 * The README's signed CI recipe, run as written: its two shell blocks (the signing job with the key,
 * then the apply job with only a patch token) in a git repository against two agents that trust the
 * CI key. The patch token alone cannot push the hotfix unsigned; the signed set commits on both
 * (stage + commit across the fleet), with the signer in history; a re-run converges; a set written
 * against sources that are no longer live is a conflict.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, REPO, createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';

let keysDir: string;
let projects: Project[] = [];
let apps: AppProcess[] = [];
let tokens: Tokens;

/** The `run: |` block that follows the first line containing `marker`, in the signed recipe section. */
function recipeBlock(marker: string): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Signed patch sets in CI'));
  const lines = section.split('\n');
  const from = lines.findIndex((l) => l.includes(marker));
  const start = lines.findIndex((l, i) => i > from && l.trim() === 'run: |');
  const body: string[] = [];
  const indent = /^ */.exec(lines[start + 1]!)![0].length;
  for (const l of lines.slice(start + 1)) {
    if (l.startsWith('```') || (l.trim() !== '' && /^ */.exec(l)![0].length < indent)) break;
    body.push(l);
  }
  return body.map((l) => l.slice(indent)).join('\n');
}

/** GET /mix's `b`, once more if a kept-alive socket was closed under the request. */
const tag = async (app: AppProcess): Promise<string> => {
  try {
    return ((await app.get('/mix')) as { b: string }).b;
  } catch {
    return ((await app.get('/mix')) as { b: string }).b;
  }
};

before(async () => {
  keysDir = mkdtempSync(join(tmpdir(), 'lp-keys-'));
  const k = await runCli(['keygen', '--out', keysDir, '--name', 'ci-release']);
  assert.equal(k.code, 0, k.stderr);
  writeFileSync(join(keysDir, 'trusted-keys'), k.stdout);
  projects = [createProject(), createProject()];
  tokens = createTokens(keysDir);
  apps = await Promise.all(
    projects.map((p) =>
      startApp(p.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_TRUSTED_KEYS: join(keysDir, 'trusted-keys') } }),
    ),
  );
});

after(async () => {
  for (const a of apps) await a.stop();
  for (const p of projects) p.cleanup();
  rmSync(keysDir, { recursive: true, force: true });
});

test('the README signed CI recipe: unsigned push refused, signed set committed on the fleet with its signer, re-run converges', async () => {
  const repo = projects[0]!;
  const fleet = apps.map((a) => a.agent!).join(',');
  const git = (...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=ci', '-c', 'user.email=ci@example.invalid', ...args], { cwd: repo.root, encoding: 'utf8' });
  repo.write('.gitignore', 'node_modules\ndist\n*.json\n');
  git('init', '-q');
  git('add', '.');
  git('commit', '-q', '-m', 'deployed');
  mkdirSync(join(repo.root, 'node_modules', '.bin'), { recursive: true });
  symlinkSync(CLI, join(repo.root, 'node_modules', '.bin', 'livepatch'));
  const quote = readFileSync(join(repo.root, 'src/quote.ts'), 'utf8');
  assert.match(quote, /'B1'/);
  repo.write('src/quote.ts', quote.replace("'B1'", "'B3'"));
  git('commit', '-q', '-am', 'hotfix: tag B3');
  const sha = git('rev-parse', 'HEAD').trim();
  const runnerTemp = mkdtempSync(join(tmpdir(), 'lp-runner-'));
  const sh = (script: string, env: Record<string, string>) =>
    spawnSync('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: repo.root,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, npm_config_offline: 'true', GITHUB_SHA: sha, RUNNER_TEMP: runnerTemp, ...env },
    });
  try {
    // The patch token alone: refused everywhere, nothing committed.
    const unsigned = await runCli(['apply', fleet, 'src/quote.ts', '--id', sha], {
      cwd: repo.root,
      env: { LIVEPATCH_TOKEN: tokens.patch },
    });
    assert.equal(unsigned.code, 1, unsigned.stderr);
    assert.match(unsigned.stderr, /accepts only signed patch sets/);
    for (const a of apps) assert.equal(await tag(a), 'B1');

    const signJob = sh(recipeBlock('LIVEPATCH_SIGNING_KEY:'), {
      LIVEPATCH_SIGNING_KEY: readFileSync(join(keysDir, 'livepatch-signing.key'), 'utf8'),
    });
    assert.equal(signJob.status, 0, signJob.stdout + signJob.stderr);
    const set = JSON.parse(readFileSync(join(repo.root, 'patch-set.json'), 'utf8'));
    assert.equal(set.id, sha);
    assert.equal(set.message, 'hotfix: tag B3');
    assert.deepEqual(Object.keys(set.base), ['src/quote.ts']);
    assert.equal(set.signature.alg, 'ed25519');

    const applyJob = () => sh(recipeBlock('LIVEPATCH_TOKEN:'), { LIVEPATCH_TOKEN: tokens.patch, FLEET: fleet });
    const first = applyJob();
    assert.equal(first.status, 0, first.stdout + first.stderr);
    for (const a of apps) assert.match(first.stdout, new RegExp(`^${a.agent} +committed +generation 2 \\(was 1\\)`, 'm'));
    for (const a of apps) assert.equal(await tag(a), 'B3');
    for (const a of apps) {
      const h = JSON.parse((await runCli(['history', a.agent!, '--json'], { env: { LIVEPATCH_TOKEN: tokens.read } })).stdout);
      assert.equal(h.find((g: any) => g.generation === 2).signer.name, 'ci-release');
    }
    const again = applyJob();
    assert.equal(again.status, 0, again.stdout + again.stderr);
    for (const a of apps) assert.match(again.stdout, new RegExp(`^${a.agent} +already-applied `, 'm'));

    // A set signed against sources that are no longer live (the deploy, not the B3 now running) is a
    // conflict (exit 5), not an overwrite.
    repo.write('src/quote.ts', quote.replace("'B1'", "'B4'"));
    git('commit', '-q', '-am', 'hotfix: tag B4');
    const sign2 = sh(recipeBlock('LIVEPATCH_SIGNING_KEY:').replaceAll('HEAD~1', 'HEAD~2'), {
      GITHUB_SHA: git('rev-parse', 'HEAD').trim(),
      RUNNER_TEMP: mkdtempSync(join(runnerTemp, 'second-')),
      LIVEPATCH_SIGNING_KEY: readFileSync(join(keysDir, 'livepatch-signing.key'), 'utf8'),
    });
    assert.equal(sign2.status, 0, sign2.stdout + sign2.stderr);
    const stale = applyJob();
    assert.equal(stale.status, 5, stale.stdout + stale.stderr);
    for (const a of apps) assert.equal(await tag(a), 'B3');
  } finally {
    rmSync(runnerTemp, { recursive: true, force: true });
  }
});
