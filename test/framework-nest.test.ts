/**
 * A NestJS app as Nest's docs write one (AppModule, controllers with @Get() routes, injected
 * @Injectable() services; decorators with emitted metadata), built with tsc: under the agent every
 * route is mapped and answers exactly as under plain node; a controller patch and a service patch
 * commit and the next request sees them, while a request in flight finishes on the old code.
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
  freePort,
  request,
  startLive,
  waitHeld,
  type LiveApp,
  type Reply,
  type Step,
} from './helpers/framework-app';

const HOLD = { slow: '/cats/slow', held: '/cats/held', release: '/cats/release' };
const NEST = ['@nestjs/core', '@nestjs/common', '@nestjs/platform-express', 'reflect-metadata', 'rxjs'];
const source = (rel: string) => readFileSync(join(FIXTURES, 'nest', rel), 'utf8');
const json = (r: Reply) => ({ status: r.status, body: JSON.parse(r.body) });

/** Every route of the app, in order (a POST included). */
const ROUTES: Step[] = [
  ...['/', '/cats', '/cats/0', '/cats/7', '/cats/x', '/cats/held', '/nope'].map((path) => ({ path })),
  { method: 'POST', path: '/cats', json: { name: 'Kit', age: 1 } },
  { path: '/cats/1' },
];

describe('nest: decorated controllers and injected services', () => {
  let project: Project;
  let live: LiveApp;
  before(async () => {
    project = createFrameworkProject('nest', Object.fromEntries(NEST.map((p) => [p, p])));
  });
  after(async () => {
    await live?.stop();
    project?.cleanup();
  });

  it('maps every route and answers the same under the agent as under plain node, before any patch', async () => {
    const expected = await plainAnswers(project, 'dist/main.js', ROUTES, HOLD);
    assert.deepEqual(
      expected.find(([k]) => k === 'GET /')![1],
      { status: 200, type: 'text/html', body: 'Hello World!' },
      'the plain app itself works',
    );
    live = await startLive(project, 'dist/main.js', await freePort());
    assert.deepEqual(await exercise(live.port, ROUTES, HOLD), expected);
  });

  it('a controller patch commits and the next request sees it', async () => {
    project.write(
      'patch/src/app.controller.ts',
      edit(
        source('src/app.controller.ts'),
        'return this.appService.getHello();',
        'return `${this.appService.getHello()} (patched controller)`;',
      ),
    );
    const r = await live.apply(['patch/src/app.controller.ts']);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(r.json.committed, true, describeRun(r));
    assert.deepEqual(await request(live.port, '/'), { status: 200, type: 'text/html', body: 'Hello World! (patched controller)' });
  });

  it('a service patch commits; the injected instance keeps its state; a request in flight finishes on the old code', async () => {
    project.write(
      'patch/src/cats/cats.service.ts',
      edit(
        source('src/cats/cats.service.ts'),
        'return this.cats;',
        'return this.cats.map((cat) => ({ ...cat, name: cat.name.toUpperCase() }));',
      ),
    );
    const slow = request(live.port, HOLD.slow);
    slow.catch(() => undefined); // awaited below; a failed assertion before that must not leave it unhandled
    await waitHeld(live.port, HOLD.held);
    const r = await live.apply(['patch/src/cats/cats.service.ts']);
    assert.equal(r.code, 0, describeRun(r));
    assert.deepEqual(json(await request(live.port, '/cats')), {
      status: 200,
      body: [
        { name: 'TOM', age: 3 },
        { name: 'KIT', age: 1 },
      ],
    });
    assert.deepEqual(json(await request(live.port, HOLD.release, { method: 'POST' })), { status: 200, body: { released: 1 } });
    assert.deepEqual(
      json(await slow),
      {
        status: 200,
        body: [
          { name: 'Tom', age: 3 },
          { name: 'Kit', age: 1 },
        ],
      },
      'the in-flight request keeps the code it started with',
    );
    assert.deepEqual(json(await request(live.port, '/cats/7')), {
      status: 404,
      body: { message: 'no cat 7', error: 'Not Found', statusCode: 404 },
    });
    assert.deepEqual(
      await request(live.port, '/'),
      { status: 200, type: 'text/html', body: 'Hello World! (patched controller)' },
      'the controller patch still holds',
    );
  });
});
