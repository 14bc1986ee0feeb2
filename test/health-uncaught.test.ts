/**
 * Per-generation health in a real agent: an uncaught exception thrown from a timer is counted against
 * the generation whose code threw (the timer's AsyncLocalStorage store, or the legacy generation for
 * storeless work), and so is an unhandled rejection; read through the `health` op.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { bootAgentApp, openAuthed, rawRequest, type AgentApp, type RawClient } from './helpers/raw-client';
import { runCli } from './helpers/project';

let a: AgentApp;
let c: RawClient;
let id = 0;

const V2 = `export function price(n: number): number {
  return n * 2;
}

export function boom(): void {
  throw new Error('boom from v2');
}
`;

const get = async (path: string) => (await fetch(`http://127.0.0.1:${a.app.httpPort}${path}`)).json();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function healthOf(generation: number): Promise<any> {
  const r = await rawRequest(c, ++id, 'health', {});
  assert.equal(r.ok, true, JSON.stringify(r.error));
  return r.result.generations.find((g: { generation: number }) => g.generation === generation)?.health;
}
async function until(what: string, fn: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await fn()) return;
    await sleep(25);
  }
  assert.fail(`timed out waiting for ${what}\n${a.app.stderr()}`);
}

before(async () => {
  a = await bootAgentApp({}, { fixture: 'health' });
  a.project.write('v2/src/routes.ts', V2);
  c = await openAuthed(a.address, a.tokens.read);
});

after(async () => {
  c?.close();
  await a?.stop();
});

test('an uncaught exception from a timer is counted against the generation whose code threw', async () => {
  // A request that stays in flight keeps generation 1 live after the patch.
  const holding = fetch(`http://127.0.0.1:${a.app.httpPort}/hold`).then((r) => r.json());
  await get('/arm?name=old'); // a timer set up under generation 1 (storeless: one generation live)
  const r = await runCli(['apply', a.address, 'v2/src/routes.ts', '--root', 'v2', '--json'], {
    cwd: a.project.root,
    env: { LIVEPATCH_TOKEN: a.tokens.patch },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).hosts[0].result.generation, 2);
  await get('/arm?name=new'); // a timer set up by a request pinned to generation 2

  const before1 = await healthOf(1);
  const before2 = await healthOf(2);
  assert.equal(before1.uncaught, 0);
  assert.equal(before2.uncaught, 0);

  await get('/fire?name=old');
  await until('the old timer to throw', async () => /uncaught: boom from v1/.test(a.app.stderr()));
  assert.equal((await healthOf(1)).uncaught, 1, 'counted against generation 1, whose code threw');
  assert.equal((await healthOf(2)).uncaught, 0);

  await get('/fire?name=new');
  await until('the new timer to throw', async () => /uncaught: boom from v2/.test(a.app.stderr()));
  assert.equal((await healthOf(2)).uncaught, 1, 'counted against generation 2, whose code threw');
  assert.equal((await healthOf(1)).uncaught, 1);

  // An unhandled rejection from a request pinned to generation 2 (Node raises it as an uncaught
  // exception, which the app's handler logs): one rejection for 2, not also an uncaught exception.
  await get('/reject');
  await until('the rejection to be raised', async () => /uncaught: nobody handles this/.test(a.app.stderr()));
  const r2 = await healthOf(2);
  assert.equal(r2.rejections, 1);
  assert.equal(r2.uncaught, 1);
  assert.equal((await healthOf(1)).rejections, 0);

  // Requests are counted per generation too: the /arm and /fire requests after the commit went to 2.
  const h2 = await healthOf(2);
  assert.ok(h2.requests >= 2 && h2.status['2xx'] >= 2, JSON.stringify(h2));
  assert.equal(typeof h2.p99Ms, 'number');
  await get('/release');
  assert.deepEqual(await holding, { held: true });
  await until('generation 1 to be released', async () => (await healthOf(1)) === undefined);
});
