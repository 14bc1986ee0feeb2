/**
 * A Fastify 5 app as Fastify's docs write one: an fp()-wrapped plugin that decorates the instance,
 * a route plugin with inline handlers (one uses the decorator), and a route plugin whose handlers
 * are top-level named functions. Under the agent it answers exactly as under plain node (the fp()
 * decorator included); a patch to an inline handler, registered at boot inside the plugin function,
 * cannot be reached and is refused with LP_ERR_PATCH_UNREACHABLE while the old answer is still
 * served; a patch to the named handlers commits, the next request sees it and a request in flight
 * finishes on the old code.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, type Project } from './helpers/project';
import {
  createFrameworkProject,
  plainAnswers,
  describeRun,
  edit,
  exercise,
  errorCode,
  freePort,
  heldAndReleased,
  request,
  startLive,
  waitHeld,
  type LiveApp,
  type Reply,
} from './helpers/framework-app';

const HOLD = { slow: '/items/slow', held: '/items/held', release: '/items/release' };
const source = (rel: string) => readFileSync(join(FIXTURES, 'fastify', rel), 'utf8');
const json = (r: Reply) => ({ status: r.status, body: JSON.parse(r.body) });

/** Every route of the app, in order, with the held request released. */
const ROUTES = ['/greet', '/shout/hey', '/items', '/items/held', '/nope'].map((path) => ({ path }));

describe('fastify: route plugins and an fp() decorator', () => {
  let project: Project;
  let live: LiveApp;
  before(async () => {
    project = createFrameworkProject('fastify', { fastify: 'fastify', 'fastify-plugin': 'fastify-plugin' });
  });
  after(async () => {
    await live?.stop();
    project?.cleanup();
  });

  it('answers every route the same under the agent as under plain node, before any patch', async () => {
    const expected = await plainAnswers(project, 'dist/server.js', ROUTES, HOLD);
    assert.deepEqual(
      json(expected.find(([k]) => k === 'GET /shout/hey')![1]),
      { status: 200, body: { text: 'HEY!' } },
      'the plain app itself works',
    );
    live = await startLive(project, 'dist/server.js', await freePort());
    assert.deepEqual(await exercise(live.port, ROUTES, HOLD), expected);
  });

  it('the fp() decorator is visible to the sibling route plugin under the agent', async () => {
    assert.deepEqual(json(await request(live.port, '/shout/again')), { status: 200, body: { text: 'AGAIN!' } });
  });

  it('a patch to an inline handler of a route plugin is refused with LP_ERR_PATCH_UNREACHABLE; the old answer is still served', async () => {
    project.write('patch/src/routes/greet.ts', edit(source('src/routes/greet.ts'), "{ greeting: 'hello' }", "{ greeting: 'hi there' }"));
    const r = await live.apply(['patch/src/routes/greet.ts']);
    const greet = json(await request(live.port, '/greet'));
    if (r.code === 0)
      assert.deepEqual(greet.body, { greeting: 'hi there' }, `reported committed, yet the old answer is served: ${describeRun(r)}`);
    assert.equal(r.code, 1, describeRun(r));
    assert.equal(errorCode(r), 'LP_ERR_PATCH_UNREACHABLE', describeRun(r));
    // A tsc-style line names the module and the line of the unreachable code (the handler, inside routes()).
    const at = /^src\/routes\/greet\.ts\((\d+),\d+\): /m.exec(r.stderr);
    assert.ok(at, `no tsc-style line for src/routes/greet.ts: ${r.stderr}`);
    assert.ok(Number(at[1]) >= 3 && Number(at[1]) <= 6, `line ${at[1]} is not in the plugin's inline handler`);
    assert.deepEqual(greet, { status: 200, body: { greeting: 'hello' } });
    assert.deepEqual(json(await request(live.port, '/shout/hey')), { status: 200, body: { text: 'HEY!' } });
  });

  it('a patch to a route plugin whose handlers are top-level named functions commits; an in-flight request finishes on the old code', async () => {
    let patched = edit(source('src/routes/items.ts'), "return ['apple', 'pear'];", "return ['apple', 'pear', 'plum'];");
    patched = edit(patched, 'return { items: stock() };\n}\n\n//', "return { items: stock(), source: 'v2' };\n}\n\n//");
    project.write('patch/src/routes/items.ts', patched);
    const slow = request(live.port, HOLD.slow);
    slow.catch(() => undefined); // awaited below; a failed assertion before that must not leave it unhandled
    await waitHeld(live.port, HOLD.held);
    const r = await live.apply(['patch/src/routes/items.ts']);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(r.json.committed, true, describeRun(r));
    assert.deepEqual(json(await request(live.port, '/items')), { status: 200, body: { items: ['apple', 'pear', 'plum'], source: 'v2' } });
    assert.deepEqual(json(await request(live.port, HOLD.release, { method: 'POST' })), { status: 200, body: { released: 1 } });
    assert.deepEqual(
      json(await slow),
      { status: 200, body: { items: ['apple', 'pear'] } },
      'the in-flight request keeps the code it started with',
    );
    const [after] = await heldAndReleased(live.port, HOLD);
    assert.deepEqual(
      json(after!),
      { status: 200, body: { items: ['apple', 'pear', 'plum'] } },
      'a request started after the commit runs the new code',
    );
  });
});
