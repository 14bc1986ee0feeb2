/**
 * `livepatch apply A,B`: two-phase apply across two real agents. When one agent rejects the patch
 * (its deployed rates.ts differs, so the patch does not type-check there), neither commits; when both
 * stage, both commit. An unreachable agent stops the operation before anything is staged.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './helpers/project';
import { BOTH_PATCH, QUOTE_PATCH, quoteTag, startFleet, type Fleet, type Host } from './cli-fleet-fixture';

let fleet: Fleet;
let a: Host;
let b: Host;

const env = () => ({ LIVEPATCH_TOKEN: fleet.tokens.patch });

before(async () => {
  fleet = await startFleet();
  ({ a, b } = fleet);
  for (const h of [a, b]) h.project.write('fix/src/quote.ts', QUOTE_PATCH);
});

after(async () => {
  await fleet?.stop();
});

async function generation(agent: string): Promise<number> {
  const r = await runCli(['status', agent, '--json'], { env: env() });
  return JSON.parse(r.stdout).currentGeneration;
}

test('one agent rejects the patch: neither commits, the staged set is aborted on the other, exit 1', async () => {
  const r = await runCli(['apply', `${a.app.agent},${b.app.agent}`, 'fix/src/quote.ts', '--root', 'fix', '--json'], { cwd: a.project.root, env: env() });
  assert.equal(r.code, 1, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.ok, false);
  assert.equal(j.committed, false);
  assert.deepEqual(j.hosts.map((h: { target: string; state: string }) => [h.target, h.state]), [[a.app.agent, 'aborted'], [b.app.agent, 'rejected']]);
  assert.equal(j.hosts[1].error.code, 'LP_ERR_PATCH_TYPE');
  assert.equal(j.error.code, 'LP_ERR_PATCH_TYPE');
  assert.ok(j.diagnostics.some((d: { file: string; code: number }) => d.file === 'src/quote.ts' && d.code === 2554));
  assert.match(r.stderr, /nothing was committed on any agent/);
  assert.equal(await generation(a.app.agent!), 1);
  assert.equal(await generation(b.app.agent!), 1);
  assert.deepEqual(await quoteTag(a.app), 'B1');
  assert.deepEqual(await quoteTag(b.app), 'B1');
});

test('an unreachable agent stops the operation before anything is staged: exit 4', async () => {
  const r = await runCli(['apply', `${a.app.agent},127.0.0.1:1`, 'fix/src/quote.ts', '--root', 'fix'], { cwd: a.project.root, env: env() });
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stdout, /^AGENT +STATE +DETAIL$/m);
  assert.match(r.stdout, new RegExp(`^${a.app.agent} +skipped `, 'm'));
  assert.match(r.stdout, /^127\.0\.0\.1:1 +unreachable +LP_ERR_CONN_REFUSED/m);
  assert.equal(await generation(a.app.agent!), 1);
});

test('every agent stages: both commit, exit 0, one row per agent', async () => {
  a.project.write('both/src/quote.ts', BOTH_PATCH);
  const r = await runCli(['apply', `${a.app.agent},${b.app.agent}`, 'both/src/quote.ts', '--root', 'both', '-m', 'tag B2'], { cwd: a.project.root, env: env() });
  assert.equal(r.code, 0, r.stderr);
  for (const h of [a, b]) {
    assert.match(r.stdout, new RegExp(`^${h.app.agent} +committed +generation 2 \\(was 1\\): src/quote\\.ts v2$`, 'm'));
    assert.equal(await generation(h.app.agent!), 2);
    assert.equal(await quoteTag(h.app), 'B2');
  }
  assert.equal((await a.app.get('/quote?c=EUR&a=10')).total, 11);
  assert.equal((await b.app.get('/quote?c=EUR&a=10')).total, 11);
});
