/**
 * Express 5 and Express 4 apps written as Express's own guide writes them (an entry module that
 * registers `/` and listens at top level, an exported `express.Router()` module, a service module),
 * built with tsc and run on a fixed port: loaded under the agent they answer exactly as they do
 * under plain node; a router handler patch and a service patch commit and are seen by the next
 * request while a request in flight finishes on the old code; on Express 4, patching the entry
 * module (whose top level listens) is refused with LP_ERR_PATCH_EFFECT, dry run included, and the
 * process keeps serving its port with nothing new left listening.
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
  request,
  startLive,
  waitHeld,
  type LiveApp,
  type Reply,
} from './helpers/framework-app';

const HOLD = { slow: '/greetings/slow/bo', held: '/greetings/held', release: '/greetings/release' };

/** Every route of the app, in order, with the held request released. */
const ROUTES = ['/', '/greetings', '/greetings/ann', '/greetings/bye/ann', '/nope'].map((path) => ({ path }));

const json = (r: Reply) => ({ status: r.status, body: JSON.parse(r.body) });

// One app, as Express's guide writes it, run on both majors (the `express` it imports is linked to each).
for (const [major, pkg] of [
  ['express5', 'express'],
  ['express4', 'express4'],
] as const) {
  const fixture = 'express';
  describe(`${major}: an app as Express's guide writes it`, () => {
    let project: Project;
    let live: LiveApp;
    const source = (rel: string) => readFileSync(join(FIXTURES, fixture, rel), 'utf8');

    before(async () => {
      project = createFrameworkProject(fixture, { express: pkg });
    });
    after(async () => {
      await live?.stop();
      project?.cleanup();
    });

    it('answers every route the same under the agent as under plain node, before any patch', async () => {
      const expected = await plainAnswers(project, 'dist/server.js', ROUTES, HOLD);
      assert.deepEqual(
        expected.find(([k]) => k === 'GET /')![1],
        { status: 200, type: 'text/html', body: 'Hello World!' },
        'the plain app itself works',
      );
      live = await startLive(project, 'dist/server.js', await freePort());
      assert.deepEqual(await exercise(live.port, ROUTES, HOLD), expected);
    });

    it('a router handler patch (a named top-level handler) commits and the next request sees it', async () => {
      project.write(
        'patch/src/greetings.ts',
        edit(source('src/greetings.ts'), '`Goodbye, ${req.params.name}.`', '`Farewell, ${req.params.name}.`'),
      );
      const r = await live.apply(['patch/src/greetings.ts']);
      assert.equal(r.code, 0, describeRun(r));
      assert.equal(r.json.committed, true, describeRun(r));
      assert.deepEqual(json(await request(live.port, '/greetings/bye/ann')), { status: 410, body: { farewell: 'Farewell, ann.' } });
      assert.deepEqual(
        json(await request(live.port, '/greetings/ann')),
        { status: 200, body: { greeting: 'Hello, ann!' } },
        'other routes unchanged',
      );
    });

    it('a service patch commits; a request in flight during the commit finishes with the old answer', async () => {
      project.write('patch/src/greeter.ts', edit(source('src/greeter.ts'), '`Hello, ${name}!`', '`Hi, ${name}!`'));
      const slow = request(live.port, HOLD.slow);
      slow.catch(() => undefined); // awaited below; a failed assertion before that must not leave it unhandled
      await waitHeld(live.port, HOLD.held);
      const r = await live.apply(['patch/src/greeter.ts']);
      assert.equal(r.code, 0, describeRun(r));
      assert.deepEqual(json(await request(live.port, '/greetings/ann')), { status: 200, body: { greeting: 'Hi, ann!' } });
      assert.deepEqual(json(await request(live.port, HOLD.release, { method: 'POST' })), { status: 200, body: { released: 1 } });
      assert.deepEqual(
        json(await slow),
        { status: 200, body: { greeting: 'Hello, bo!' } },
        'the in-flight request keeps the code it started with',
      );
      assert.deepEqual(
        json(await request(live.port, '/greetings/bye/ann')),
        { status: 410, body: { farewell: 'Farewell, ann.' } },
        'the earlier patch still holds',
      );
    });

    if (major === 'express4') {
      it('an entry-module patch (top-level listen) is refused with LP_ERR_PATCH_EFFECT, dry run too; the process keeps serving its port', async () => {
        const listening = async () =>
          (await live.evaluate("process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap').length")).output;
        const servers = await listening();
        const pid = live.app.child.pid;
        project.write(
          'patch/src/server.ts',
          edit(source('src/server.ts'), "res.send('Hello World!')", "res.send('Hello, patched world!')"),
        );
        for (const extra of [['--dry-run'], []]) {
          const r = await live.apply(['patch/src/server.ts'], extra);
          const what = `apply ${extra.join(' ')}: ${describeRun(r)}`;
          assert.notEqual(r.code, 0, `an entry-module patch must not be reported as ${extra.length ? 'passing' : 'committed'}: ${what}`);
          assert.equal(r.code, 1, what);
          assert.equal(errorCode(r), 'LP_ERR_PATCH_EFFECT', what);
          assert.equal(live.app.child.exitCode, null, `the app exited: ${live.app.stderr()}`);
          assert.equal(live.app.child.signalCode, null);
          assert.equal(live.app.child.pid, pid);
          assert.deepEqual(await request(live.port, '/'), { status: 200, type: 'text/html', body: 'Hello World!' }, what);
          assert.deepEqual(json(await request(live.port, '/greetings/ann')), { status: 200, body: { greeting: 'Hi, ann!' } });
          assert.equal(await listening(), servers, 'the refused patch left no server listening');
        }
      });
    }
  });
}
