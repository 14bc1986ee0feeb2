/**
 * `apply --watch` against a real agent under HTTP load: a patch that makes the route throw is reverted
 * by the agent within the window (CLI exit 6, `reverted` in the JSON, the audit record names the
 * figure), and a good patch under the same watch stays (exit 0), with `status` showing the watch while
 * it runs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { bootAgentApp, readAudit, type AgentApp } from './helpers/raw-client';
import { CLI, runCli } from './helpers/project';
import { launch } from '../testkit/launch';

let a: AgentApp;
let stopLoad = false;
let load: Promise<void>[] = [];
const seen = { ok: 0, failed: 0 };

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

const cli = (args: string[], role: 'read' | 'patch' = 'patch') =>
  runCli(args, { cwd: a.project.root, env: { LIVEPATCH_TOKEN: a.tokens[role] }, timeoutMs: 90_000 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function loop(): Promise<void> {
  while (!stopLoad) {
    try {
      const r = await fetch(`http://127.0.0.1:${a.app.httpPort}/price?n=5`);
      await r.text();
      if (r.status === 200) seen.ok++;
      else seen.failed++;
    } catch {
      seen.failed++;
    }
    await sleep(2);
  }
}

before(async () => {
  a = await bootAgentApp({}, { fixture: 'health' });
  a.project.write('bad/src/routes.ts', BAD);
  a.project.write('good/src/routes.ts', GOOD);
  load = [loop(), loop(), loop()];
  // The previous generation's figures need requests in the window before the commit.
  while (seen.ok < 60) await sleep(50);
});

after(async () => {
  stopLoad = true;
  await Promise.all(load);
  await a?.stop();
});

test('a patch that makes the route throw is reverted by the watch within the window: exit 6, reverted {reason, figures}, audited with the figure', async () => {
  const r = await cli([
    'apply',
    a.address,
    'bad/src/routes.ts',
    '--root',
    'bad',
    '-m',
    'bad feed',
    '--watch',
    '20s',
    '--min-requests',
    '10',
    '--json',
  ]);
  assert.equal(r.code, 6, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.ok, false);
  assert.equal(out.committed, true);
  assert.match(out.reverted.reason, /^errorRate /);
  assert.equal(out.reverted.figures.generation, 2);
  assert.equal(out.reverted.figures.previousGeneration, 1);
  assert.ok(out.reverted.figures.current.status['5xx'] >= 10, JSON.stringify(out.reverted.figures.current));
  assert.equal(out.reverted.figures.previous.status['5xx'], 0);
  assert.ok(out.reverted.figures.previous.requests > 0, 'the previous generation had requests in the window');
  const host = out.hosts[0];
  assert.equal(host.state, 'reverted');
  assert.equal(host.exitCode, 6);
  assert.equal(host.error.code, 'LP_ERR_WATCH_REVERTED');
  assert.equal(host.result.watch.verdict, 'reverted');
  assert.equal(host.result.watch.revertGeneration, 3);
  assert.ok(host.result.watch.durationMs < 20_000, `reverted within the window (${host.result.watch.durationMs} ms)`);
  assert.match(r.stderr, /the watch reverted the patch: errorRate/);

  // The deployed code serves again.
  const res = await fetch(`http://127.0.0.1:${a.app.httpPort}/price?n=5`);
  assert.deepEqual(await res.json(), { price: 10 });
  const s = JSON.parse((await cli(['status', a.address, '--json'], 'read')).stdout);
  assert.equal(s.currentGeneration, 3);
  assert.equal(s.watch, undefined);

  const rec = readAudit(a.auditFile).filter((x) => x.op === 'watch');
  assert.equal(rec.length, 1);
  assert.equal(rec[0].outcome, 'reverted');
  assert.equal(rec[0].figure, 'errorRate');
  assert.equal(rec[0].who, 'patcher');
  assert.equal(rec[0].generation, 2);
  assert.match(rec[0].detail, /errorRate [\d.]+ > [\d.]+ \(previous 0 \+ max-error-rate 0\.01; \d+ error\(s\) in \d+ request\(s\)\)/);
  assert.match(rec[0].detail, /reverted to generation 1 as generation 3/);
  const h = JSON.parse((await cli(['history', a.address, '--json'], 'read')).stdout);
  const g3 = h.find((g: { generation: number }) => g.generation === 3);
  assert.equal(g3.kind, 'rollback');
  assert.equal(g3.who, 'patcher (watch)');
});

test('a good patch under the same watch stays: exit 0, verdict kept; status shows the watch while it runs', async () => {
  // Judged on the error rate only: a p99 ratio over a few seconds is noise on a shared CI machine.
  const applying = cli([
    'apply',
    a.address,
    'good/src/routes.ts',
    '--root',
    'good',
    '--watch',
    '8s',
    '--min-requests',
    '10',
    '--max-p99-ratio',
    '1000',
    '--json',
  ]);
  let settled = false;
  void applying.then(() => (settled = true));
  let during: any;
  let human: { stdout: string } | undefined;
  while (!during && !settled) {
    const [j, hu] = await Promise.all([cli(['status', a.address, '--json'], 'read'), cli(['status', a.address], 'read')]);
    const s = JSON.parse(j.stdout);
    if (s.watch && /^watch /m.test(hu.stdout)) {
      during = s;
      human = hu;
    } else await sleep(50);
  }
  assert.ok(during, `status showed the watch in progress (the apply ended first: ${settled ? (await applying).stdout : ''})`);
  assert.equal(during.watch.generation, 4);
  assert.equal(during.watch.previousGeneration, 3);
  assert.equal(during.watch.who, 'patcher');
  assert.equal(during.watch.limits.minRequests, 10);
  assert.match(human!.stdout, /^watch +generation 4 against 3 until /m);

  const r = await applying;
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.ok, true);
  assert.equal(out.reverted, undefined);
  assert.equal(out.hosts[0].state, 'committed');
  assert.equal(out.hosts[0].result.watch.verdict, 'kept');
  assert.ok(out.hosts[0].result.watch.figures.current.requests >= 10);
  assert.equal(out.hosts[0].result.watch.figures.current.status['5xx'], 0);
  const res = await fetch(`http://127.0.0.1:${a.app.httpPort}/price?n=5`);
  assert.deepEqual(await res.json(), { price: 15 });
  const s = JSON.parse((await cli(['status', a.address, '--json'], 'read')).stdout);
  assert.equal(s.currentGeneration, 4);
  const cur = s.liveGenerations.find((g: { current: boolean }) => g.current);
  assert.ok(cur.health.requests > 0 && cur.health.status['2xx'] > 0, JSON.stringify(cur.health));
  const rec = readAudit(a.auditFile).filter((x) => x.op === 'watch');
  assert.deepEqual(
    rec.map((x) => x.outcome),
    ['reverted', 'kept'],
  );
});

test('the watch runs in the agent: with the CLI killed mid-watch, the bad patch is still reverted and audited', async () => {
  // Enough requests needed before judging that the CLI can be killed first.
  await using apply = await launch({
    args: [CLI, 'apply', a.address, 'bad/src/routes.ts', '--root', 'bad', '--watch', '30s', '--min-requests', '300', '--json'],
    cwd: a.project.root,
    env: { LIVEPATCH_TOKEN: a.tokens.patch },
    name: 'livepatch apply',
  });
  // Bounded by time, not by polls: each poll runs the CLI, which is slow on a loaded machine.
  let watching = false;
  for (const until = Date.now() + 120_000; !watching && !apply.exit() && Date.now() < until;) {
    const st = JSON.parse((await cli(['status', a.address, '--json'], 'read')).stdout);
    watching = st.watch?.generation === 5;
    if (!watching) await sleep(25);
  }
  const ended = apply.exit();
  assert.ok(watching, `the watch started (apply ${ended ? `exited ${String(ended.code)}` : 'still running'}: ${apply.output()})`);
  apply.child.kill('SIGKILL');
  await apply.exited;
  let s: any;
  for (const until = Date.now() + 120_000; Date.now() < until;) {
    s = JSON.parse((await cli(['status', a.address, '--json'], 'read')).stdout);
    if (s.currentGeneration === 6) break;
    await sleep(50);
  }
  assert.equal(s.currentGeneration, 6, 'reverted without the client');
  assert.equal(s.watch, undefined);
  const res = await fetch(`http://127.0.0.1:${a.app.httpPort}/price?n=5`);
  assert.deepEqual(await res.json(), { price: 15 }, 'back on the good patch of generation 4');
  const rec = readAudit(a.auditFile).filter((x) => x.op === 'watch');
  assert.deepEqual(
    rec.map((x) => [x.outcome, x.generation, x.figure]),
    [
      ['reverted', 2, 'errorRate'],
      ['kept', 4, undefined],
      ['reverted', 5, 'errorRate'],
    ],
  );
});

test('--watch usage errors exit 2 before anything is sent', async () => {
  for (const args of [
    ['--watch', 'soon'],
    ['--watch', '11m'],
    ['--max-error-rate', '0.1'],
    ['--watch', '5s', '--max-error-rate', '2'],
    ['--watch', '5s', '--dry-run'],
  ]) {
    const r = await cli(['apply', a.address, 'good/src/routes.ts', '--root', 'good', ...args, '--json']);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_CLI_USAGE');
  }
});
