/**
 * `apply A,B PATCH --watch` across two real agents: both commit, only A gets traffic, and A's watch
 * reverts the patch that makes its route throw; the CLI then rolls B back too (its own watch ends as
 * superseded), exits 6 and reports both hosts as reverted.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { readAudit } from './helpers/raw-client';

let pa: Project;
let pb: Project;
let tokens: Tokens;
let a: AppProcess;
let b: AppProcess;
let stopLoad = false;
let load: Promise<void> = Promise.resolve();

const BAD = `export function price(n: number): number {
  if (n > 0) throw new Error('price feed is down');
  return n * 2;
}

export function boom(): void {
  throw new Error('boom from v1');
}
`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const env = () => ({ LIVEPATCH_TOKEN: tokens.patch });

async function loop(app: AppProcess): Promise<void> {
  while (!stopLoad) {
    await fetch(`http://127.0.0.1:${app.httpPort}/price?n=5`).then(
      (r) => r.text(),
      () => undefined,
    );
    await sleep(2);
  }
}

before(async () => {
  pa = createProject('health');
  pb = createProject('health');
  tokens = createTokens(pa.root);
  a = await startApp(pa.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_AUDIT: join(pa.root, 'audit.jsonl') } });
  b = await startApp(pb.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_AUDIT: join(pb.root, 'audit.jsonl') } });
  pa.write('bad/src/routes.ts', BAD);
  load = Promise.all([loop(a), loop(a)]).then(() => undefined);
  await sleep(1000);
});

after(async () => {
  stopLoad = true;
  await load;
  await a?.stop();
  await b?.stop();
  pa?.cleanup();
  pb?.cleanup();
});

test("a revert by one agent's watch reverts every agent: exit 6, both hosts reverted", async () => {
  const r = await runCli(
    ['apply', `${a.agent},${b.agent}`, 'bad/src/routes.ts', '--root', 'bad', '--watch', '30s', '--min-requests', '10', '--json'],
    { cwd: pa.root, env: env(), timeoutMs: 90_000 },
  );
  assert.equal(r.code, 6, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.ok, false);
  assert.equal(j.reverted.target, a.agent);
  assert.match(j.reverted.reason, /^errorRate /);
  assert.deepEqual(
    j.hosts.map((h: { target: string; state: string; exitCode: number }) => [h.target, h.state, h.exitCode]),
    [
      [a.agent, 'reverted', 6],
      [b.agent, 'reverted', 6],
    ],
  );
  assert.equal(j.hosts[0].result.watch.verdict, 'reverted');
  assert.equal(j.hosts[1].result.watch.verdict, 'superseded', "B's watch ended when the CLI rolled B back");
  assert.ok(j.hosts[1].result.watch.durationMs < 30_000);
  assert.equal(j.hosts[1].revert.generation, 3);
  assert.match(r.stderr, /tripped on .*every agent was rolled back/);
  for (const app of [a, b]) {
    const res = await fetch(`http://127.0.0.1:${app.httpPort}/price?n=5`);
    assert.deepEqual(await res.json(), { price: 10 });
    const s = JSON.parse((await runCli(['status', app.agent!, '--json'], { env: env() })).stdout);
    assert.equal(s.currentGeneration, 3);
  }
  const watchB = readAudit(join(pb.root, 'audit.jsonl')).filter((x) => x.op === 'watch');
  assert.deepEqual(
    watchB.map((x) => x.outcome),
    ['superseded'],
  );
  const watchA = readAudit(join(pa.root, 'audit.jsonl')).filter((x) => x.op === 'watch');
  assert.deepEqual(
    watchA.map((x) => [x.outcome, x.figure]),
    [['reverted', 'errorRate']],
  );
});
