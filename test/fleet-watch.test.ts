/**
 * `apply etcd://.../NAME --watch` against a real etcd (LIVEPATCH_TEST_ETCD) and three real agents under
 * HTTP load (the health fixture): a canary of one whose watch sees the route throw rolls itself back and
 * the others never commit (exit 6); the same canary rollback happens with the client killed during the
 * watch; a good patch under the same canary watch commits everywhere (exit 0); without a canary every
 * member watches, and a revert on one rolls the whole fleet back (exit 6, a rollback entry in the log).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { dropFleet, ETCD, memberCount, rawEtcd, requireEtcd, skipWithoutEtcd, uniqueFleet, waitFor } from './helpers/etcd';
import { launch } from '../testkit/launch';

const skip = skipWithoutEtcd;
const NAME = uniqueFleet('w3');
const url = () => `etcd://${ETCD}/${NAME}`;
const PREFIX = `livepatch/fleets/${NAME}/`;
const SLOW = { cwd: '', timeoutMs: 200_000 };
// The watch judges the error rate here; p99 on a shared 2-core machine is noise (a good patch's p99 can
// double), so its limit is set out of reach.
const JUDGE = ['--min-requests', '10', '--max-p99-ratio', '50'];

const BAD = `export function price(n: number): number {
  if (n > 0) throw new Error('price feed is down');
  return n * 2;
}

export function boom(): void {
  throw new Error('boom from v1');
}
`;
const GOOD = `export function price(n: number): number {
  return n * 3;
}

export function boom(): void {
  throw new Error('boom from v1');
}
`;

let project: Project;
let tokens: Tokens;
const apps: AppProcess[] = [];
let etcd: ReturnType<typeof rawEtcd>;
let stopLoad = false;
const loops: Promise<void>[] = [];
const served = new Map<AppProcess, number>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function loop(app: AppProcess): Promise<void> {
  while (!stopLoad) {
    try {
      const r = await fetch(`http://127.0.0.1:${app.httpPort}/price?n=5`);
      await r.text();
      served.set(app, (served.get(app) ?? 0) + 1);
    } catch {
      // Counted by the agent as it sees it; the test reads the agents' figures.
    }
    await sleep(3);
  }
}

async function priceOf(app: AppProcess): Promise<number> {
  return (await app.get('/price?n=5')).price;
}

async function generationOf(app: AppProcess): Promise<number> {
  const r = await runCli(['status', app.agent!, '--json'], { env: { LIVEPATCH_TOKEN: tokens.read } });
  return JSON.parse(r.stdout).currentGeneration;
}

async function ackStates(rid: string): Promise<string[]> {
  return Object.values(await etcd.getAll().prefix(`${PREFIX}acks/${rid}/`).strings()).map((v) => JSON.parse(v).state);
}

before(async () => {
  if (skip) return;
  requireEtcd();
  etcd = rawEtcd();
  project = createProject('health');
  tokens = createTokens(project.root);
  project.write('bad/src/routes.ts', BAD);
  project.write('good/src/routes.ts', GOOD);
  for (let i = 0; i < 3; i++)
    apps.push(
      await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_FLEET: url(), LIVEPATCH_FLEET_LEASE_TTL: '2' } }),
    );
  await waitFor('three members', async () => (await memberCount(etcd, PREFIX)) === 3);
  for (const a of apps) loops.push(loop(a), loop(a));
  // Each agent's previous generation needs requests in the window before a commit.
  await waitFor('load on every app', async () => apps.every((a) => (served.get(a) ?? 0) >= 60));
});

after(async () => {
  stopLoad = true;
  await Promise.all(loops);
  for (const a of apps) await a.stop();
  await dropFleet(etcd, PREFIX);
  project?.cleanup();
});

test('a canary of 1 whose watch sees the route throw rolls itself back; the others never commit (exit 6)', { skip }, async () => {
  const gens = await Promise.all(apps.map(generationOf));
  const r = await runCli(
    ['apply', url(), 'bad/src/routes.ts', '--root', 'bad', '--canary', '1', '--deadline', '180000', '--watch', '20s', ...JUDGE, '--json'],
    { ...SLOW, cwd: project.root },
  );
  assert.equal(r.code, 6, r.stderr + r.stdout);
  const j = JSON.parse(r.stdout);
  assert.equal(j.ok, false);
  assert.equal(j.committed, false);
  assert.equal(j.decision, 'abort');
  assert.equal(j.error.code, 'LP_ERR_WATCH_REVERTED');
  assert.equal(j.canaries.length, 1);
  const canary = j.members.find((m: { canary?: boolean }) => m.canary);
  assert.equal(canary.state, 'rolled-back');
  assert.equal(canary.watch.verdict, 'reverted');
  assert.equal(j.reverted.target, canary.address);
  assert.match(j.reverted.reason, /^errorRate /);
  assert.ok(j.reverted.figures.current.status['5xx'] >= 10, JSON.stringify(j.reverted.figures.current));
  assert.equal(j.reverted.figures.previous.status['5xx'], 0);
  assert.match(r.stderr, /the watch reverted the patch \(tripped on /);
  // The verdict is in etcd, written by the canary's agent.
  const v = JSON.parse((await etcd.get(`${PREFIX}watch/${j.rollout}/${canary.id}`).string())!);
  assert.equal(v.verdict, 'reverted');
  assert.equal(v.canary, true);
  await waitFor('the others aborted', async () => (await ackStates(j.rollout)).filter((s) => s === 'aborted').length === 2);
  // The agent's own watch judged and reverted (its audit record, as for `apply HOST:PORT --watch`).
  const audit = readFileSync(join(project.root, '.livepatch', 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const watched = audit.filter((x) => x.op === 'watch');
  assert.equal(watched.length, 1);
  assert.equal(watched[0].outcome, 'reverted');
  assert.equal(watched[0].figure, 'errorRate');
  assert.match(watched[0].who, new RegExp(`^fleet:${NAME}:`));
  const now = await Promise.all(apps.map(generationOf));
  apps.forEach((a, i) => {
    if (a.agent === canary.address) assert.equal(now[i], gens[i]! + 2, 'the canary committed, then its watch reverted it');
    else assert.equal(now[i], gens[i], 'the others never committed');
  });
  for (const a of apps) assert.equal(await priceOf(a), 10);
  assert.equal(await etcd.get(`${PREFIX}head`).string(), null, 'the fleet generation did not move');
});

test('the client killed during the canary watch: the canary still rolls itself back and aborts the rest', { skip }, async () => {
  const gens = await Promise.all(apps.map(generationOf));
  await using apply = await launch({
    args: [CLI, 'apply', url(), 'bad/src/routes.ts', '--root', 'bad', '--canary', '1', '--deadline', '180000', '--watch', '20s', ...JUDGE],
    cwd: project.root,
    name: 'livepatch apply',
  });
  await apply.waitFor('stderr', /the canaries watch their new generation/, { timeoutMs: 120_000 });
  const rid = /rollout (\S+): proposed/.exec(apply.stderr())![1]!;
  apply.child.kill('SIGKILL');
  // Long before the rollout's deadline (180 s): the canary's own abort after its watch reverted it.
  await waitFor('the canary to abort the rollout', async () => (await etcd.get(`${PREFIX}decision/${rid}`).string()) === 'abort', 40_000);
  await waitFor('the canary rolled back, the others aborted', async () => {
    const s = (await ackStates(rid)).sort();
    return s.length === 3 && s.join() === 'aborted,aborted,rolled-back';
  });
  const now = await Promise.all(apps.map(generationOf));
  assert.deepEqual(now.map((g, i) => g - gens[i]!).sort(), [0, 0, 2]);
  for (const a of apps) assert.equal(await priceOf(a), 10);
  assert.equal(await etcd.get(`${PREFIX}head`).string(), null);
});

test('a good patch under the same canary watch commits everywhere (exit 0)', { skip }, async () => {
  const r = await runCli(
    ['apply', url(), 'good/src/routes.ts', '--root', 'good', '--canary', '1', '--deadline', '180000', '--watch', '5s', ...JUDGE, '--json'],
    { ...SLOW, cwd: project.root },
  );
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const j = JSON.parse(r.stdout);
  assert.equal(j.ok, true);
  assert.equal(j.committed, true);
  assert.equal(j.generation, 1);
  assert.equal(j.reverted, undefined);
  assert.deepEqual(
    j.members.map((m: { state: string }) => m.state),
    ['committed', 'committed', 'committed'],
  );
  const canary = j.members.find((m: { canary?: boolean }) => m.canary);
  assert.equal(canary.watch.verdict, 'kept');
  assert.equal(j.members.filter((m: { watch?: unknown }) => m.watch).length, 1, 'only the canary watched');
  for (const a of apps) assert.equal(await priceOf(a), 15);
});

test('--watch without --canary: every member watches; a revert on one rolls the whole fleet back (exit 6)', { skip }, async () => {
  const r = await runCli(
    ['apply', url(), 'bad/src/routes.ts', '--root', 'bad', '--deadline', '180000', '--watch', '20s', ...JUDGE, '--json'],
    { ...SLOW, cwd: project.root },
  );
  assert.equal(r.code, 6, r.stderr + r.stdout);
  const j = JSON.parse(r.stdout);
  assert.equal(j.ok, false);
  assert.equal(j.committed, true);
  assert.equal(j.error.code, 'LP_ERR_WATCH_REVERTED');
  assert.equal(j.generation, 3, 'committed as 2, rolled back as 3');
  assert.match(j.reverted.reason, /^errorRate /);
  assert.ok(j.members.some((m: { address: string }) => m.address === j.reverted.target));
  assert.equal(j.members.length, 3);
  assert.ok(
    j.members.every((m: { watch?: unknown }) => m.watch),
    JSON.stringify(j.members),
  );
  assert.equal(await etcd.get(`${PREFIX}head`).string(), '3');
  await waitFor('every member back on the good patch', async () => (await Promise.all(apps.map(priceOf))).every((p) => p === 15));
  const h = await runCli(['history', url(), '--json']);
  const entries = JSON.parse(h.stdout).entries;
  assert.deepEqual(
    entries.map((e: { seq: number; kind: string }) => [e.seq, e.kind]),
    [
      [3, 'rollback'],
      [2, 'patch'],
      [1, 'patch'],
    ],
  );
  assert.equal(entries[0].to, 1);
  assert.match(entries[0].message, /^reverted by the watch on /);
  await waitFor('status clean', async () => {
    const s = await runCli(['status', url(), '--json']);
    return JSON.parse(s.stdout).ok === true;
  });
});

test(
  '--canary with --watch: a --deadline shorter than the watch plus 10 s is a usage error (exit 2), nothing proposed',
  { skip },
  async () => {
    const before = (await etcd.getAll().prefix(`${PREFIX}rollouts/`).keys()).length;
    const r = await runCli(
      ['apply', url(), 'good/src/routes.ts', '--root', 'good', '--canary', '1', '--watch', '20s', '--deadline', '25000', '--json'],
      { cwd: project.root },
    );
    assert.equal(r.code, 2, r.stderr + r.stdout);
    assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_CLI_USAGE');
    assert.match(r.stderr, /--deadline 25000 is too short/);
    assert.equal((await etcd.getAll().prefix(`${PREFIX}rollouts/`).keys()).length, before);
  },
);
