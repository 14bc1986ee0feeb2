/**
 * `livepatch apply A,B`: two-phase apply across two real agents. When one agent rejects the patch
 * (its deployed rates.ts differs, so the patch does not type-check there), neither commits; when both
 * stage, both commit. An unreachable agent stops the operation before anything is staged; Ctrl-C
 * while staging aborts the staged sets (checked in the agents' audit logs).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, runCli } from './helpers/project';
import { launch } from '../testkit/launch';
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

/** The ops the agent's audit log records for `stageId`, in order (outcome 'ok' only). */
function auditOps(h: Host, stageId: string): string[] {
  const lines = readFileSync(join(h.project.root, '.livepatch', 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n');
  return lines
    .map((l) => JSON.parse(l))
    .filter((r) => r.stageId === stageId && r.outcome === 'ok')
    .map((r) => r.op);
}

async function generation(agent: string): Promise<number> {
  const r = await runCli(['status', agent, '--json'], { env: env() });
  return JSON.parse(r.stdout).currentGeneration;
}

test('one agent rejects the patch: neither commits, the staged set is aborted on the other, exit 1', async () => {
  const r = await runCli(['apply', `${a.app.agent},${b.app.agent}`, 'fix/src/quote.ts', '--root', 'fix', '--json'], {
    cwd: a.project.root,
    env: env(),
  });
  assert.equal(r.code, 1, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.ok, false);
  assert.equal(j.committed, false);
  assert.deepEqual(
    j.hosts.map((h: { target: string; state: string }) => [h.target, h.state]),
    [
      [a.app.agent, 'aborted'],
      [b.app.agent, 'rejected'],
    ],
  );
  assert.equal(j.hosts[1].error.code, 'LP_ERR_PATCH_TYPE');
  assert.equal(j.error.code, 'LP_ERR_PATCH_TYPE');
  assert.ok(j.diagnostics.some((d: { file: string; code: number }) => d.file === 'src/quote.ts' && d.code === 2554));
  assert.match(r.stderr, /nothing was committed on any agent/);
  const stageId = j.hosts[0].stage.stageId;
  assert.deepEqual(auditOps(a, stageId), ['stage', 'abort'], 'A staged, then the CLI aborted it');
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

test('Ctrl-C while staging waits for the stages, aborts them on every agent, and exits 130', async () => {
  // The verify hook marks that staging reached it on that agent, then holds the stage for 3 s.
  const verify =
    "import { writeFileSync } from 'node:fs';\nimport { join } from 'node:path';\nexport async function slowly(): Promise<void> {\n  writeFileSync(join(process.cwd(), 'verify-started'), '');\n  await new Promise((r) => setTimeout(r, 3000));\n}\n";
  a.project.write('slow-verify.ts', verify);
  a.project.write('both/src/quote.ts', BOTH_PATCH);
  await using apply = await launch({
    args: [CLI, 'apply', `${a.agent},${b.agent}`, 'both/src/quote.ts', '--root', 'both', '--verify', 'slow-verify.ts', '--json'],
    cwd: a.project.root,
    env: env(),
    name: 'livepatch apply',
  });
  const markers = [a, b].map((h) => join(h.project.root, 'verify-started'));
  for (let i = 0; i < 600 && !markers.every((m) => existsSync(m)); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(
    markers.every((m) => existsSync(m)),
    `staging never reached the verify hook on both agents\n${apply.stderr()}`,
  );
  apply.child.kill('SIGINT');
  const { code } = await apply.exited;
  assert.equal(code, 130, apply.stderr());
  assert.match(apply.stderr(), /interrupted: waiting for the agents still staging/);
  const j = JSON.parse(apply.stdout());
  assert.deepEqual(
    j.hosts.map((h: { state: string }) => h.state),
    ['aborted', 'aborted'],
  );
  for (const [i, h] of [a, b].entries()) {
    assert.deepEqual(auditOps(h, j.hosts[i].stage.stageId), ['stage', 'abort']);
    assert.equal(await generation(h.agent), 1);
  }
});

test('every agent stages: both commit, exit 0, one row per agent', async () => {
  a.project.write('both/src/quote.ts', BOTH_PATCH);
  const r = await runCli(['apply', `${a.app.agent},${b.app.agent}`, 'both/src/quote.ts', '--root', 'both', '-m', 'tag B2'], {
    cwd: a.project.root,
    env: env(),
  });
  assert.equal(r.code, 0, r.stderr);
  for (const h of [a, b]) {
    assert.match(r.stdout, new RegExp(`^${h.app.agent} +committed +generation 2 \\(was 1\\): src/quote\\.ts v2$`, 'm'));
    assert.equal(await generation(h.app.agent!), 2);
    assert.equal(await quoteTag(h.app), 'B2');
  }
  assert.equal((await a.app.get('/quote?c=EUR&a=10')).total, 11);
  assert.equal((await b.app.get('/quote?c=EUR&a=10')).total, 11);
});
