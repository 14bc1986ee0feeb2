/**
 * The README's CI recipe, run as written (its shell block, with `npx livepatch` resolving to this
 * build) in a git repository against two real agents: a hotfix commit's changed files patch the
 * agents that lack them (one already has them from an interrupted run), a re-run is a no-op, and a
 * hotfix that one agent rejects fails the build with nothing committed anywhere.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, REPO, runCli } from './helpers/project';
import { BOTH_PATCH, QUOTE_PATCH, quoteTag, startFleet, type Fleet } from './cli-fleet-fixture';

let fleet: Fleet;

before(async () => {
  fleet = await startFleet();
});

after(async () => {
  await fleet?.stop();
});

/** The shell body of the README's CI recipe (the `run: |` block of the livepatch step). */
function ciRecipe(): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## CI recipe'));
  const lines = section.split('\n');
  const start = lines.findIndex((l) => l.trim() === 'run: |' && lines.indexOf(l) > lines.findIndex((x) => x.includes('LIVEPATCH_TOKEN:')));
  const body: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (l.startsWith('```')) break;
    body.push(l);
  }
  const indent = /^ */.exec(body[0]!)![0].length;
  return body.map((l) => l.slice(indent)).join('\n');
}

test('the README CI recipe patches the fleet from a hotfix commit, completes an interrupted rollout, is a no-op on re-run, and fails the build on rejection', async () => {
  const { a, b, tokens } = fleet;
  const repo = a.project;
  const git = (...args: string[]) =>
    execFileSync('git', ['-c', 'user.name=ci', '-c', 'user.email=ci@example.invalid', ...args], { cwd: repo.root, encoding: 'utf8' });
  repo.write('.gitignore', 'node_modules\ndist\nfix\nboth\n*.json\n');
  git('init', '-q');
  git('add', '.');
  git('commit', '-q', '-m', 'deployed');
  mkdirSync(join(repo.root, 'node_modules', '.bin'), { recursive: true });
  symlinkSync(CLI, join(repo.root, 'node_modules', '.bin', 'livepatch'));
  const script = ciRecipe();
  const run = (sha: string) =>
    spawnSync('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: repo.root,
      encoding: 'utf8',
      timeout: 120_000,
      env: {
        ...process.env,
        LIVEPATCH_TOKEN: tokens.patch,
        FLEET: `${a.app.agent},${b.app.agent}`,
        GITHUB_SHA: sha,
        npm_config_offline: 'true',
      },
    });

  repo.write('src/quote.ts', BOTH_PATCH.replace("'B2'", "'B3'"));
  git('commit', '-q', '-am', 'hotfix: tag B3');
  const sha = git('rev-parse', 'HEAD').trim();
  // An earlier run was interrupted after agent A committed: A has the patch id, B does not.
  const partial = await runCli(['apply', a.agent, 'src/quote.ts', '--id', sha], { cwd: repo.root, env: { LIVEPATCH_TOKEN: tokens.patch } });
  assert.equal(partial.code, 0, partial.stderr);
  const first = run(sha);
  assert.equal(first.status, 0, first.stdout + first.stderr);
  assert.match(first.stdout, new RegExp(`^${a.agent} +already-applied `, 'm'));
  assert.match(first.stdout, new RegExp(`^${b.agent} +committed +generation 2 \\(was 1\\)`, 'm'));
  for (const h of [a, b]) assert.equal(await quoteTag(h.app), 'B3');
  const again = run(sha);
  assert.equal(again.status, 0, again.stdout + again.stderr);
  assert.match(again.stdout, new RegExp(`^${b.agent} +already-applied `, 'm'));

  repo.write('src/quote.ts', QUOTE_PATCH.replace("'B2'", "'B4'"));
  git('commit', '-q', '-am', 'hotfix: only fits host A');
  const rejected = run(git('rev-parse', 'HEAD').trim());
  assert.equal(rejected.status, 1, rejected.stdout + rejected.stderr);
  assert.match(rejected.stderr, /src\/quote\.ts\(4,\d+\): error TS2554/);
  for (const h of [a, b]) assert.equal(await quoteTag(h.app), 'B3', 'no agent committed');
});
