/**
 * Facade shapes and module ids, with the engine installed in this test process over real files on
 * disk: classes (statics, accessors, subclasses, `instanceof` inside module code), default exports,
 * `module.exports = fn`, `__esModule`, tsconfig rootDir/outDir and source-map id mapping, `pin`, and
 * pinning of `node:https` requests, an app's own 'close' listener running on its request's generation,
 * and each response counted once in its generation's health (finished, torn down, or from a response
 * class with its own `emit`).
 */
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { install, pin } from '../server/engine';
import type { Engine } from '../server/engine/types';
import { changes, transpile } from './helpers/engine-app';

let root: string;
let engine: Engine;
const write = (rel: string, text: string): void => {
  mkdirSync(dirname(join(root, rel)), { recursive: true });
  writeFileSync(join(root, rel), text);
};
/** Write src/<name>.ts and its compiled dist/<name>.js. */
const writeModule = (name: string, ts: string): void => {
  write(`src/${name}.ts`, ts);
  write(`dist/${name}.js`, transpile(`src/${name}.ts`, ts));
};
const apply = async (files: Record<string, string>): Promise<void> => {
  engine.commit(await engine.stage(changes(files)));
};
/** Wait while `pending()` holds: checked every 10 ms, at most `tries` times (the caller asserts after). */
const waitWhile = async (pending: () => boolean, tries: number): Promise<void> => {
  for (let i = 0; i < tries && pending(); i++) await new Promise((res) => setTimeout(res, 10));
};
const portOf = (server: http.Server): number => (server.address() as { port: number }).port;
/** Listen on a free loopback port until test `t` ends; the port. */
const listen = async (server: http.Server, t: TestContext): Promise<number> => {
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  t.after(() => server.close());
  return portOf(server);
};

const SHAPE_V1 = `export class Shape {
  static made = 0;
  static create(n: number): Shape { Shape.made++; return new Shape(n); }
  constructor(public n: number) {}
  get double(): number { return this.n * 2; }
  describe(): string { return 'v1:' + this.n; }
  isShape(x: unknown): boolean { return x instanceof Shape; }
}
export default function greet(who: string): string { return 'hello ' + who; }
export const version = 1;
`;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'lp-engine-facade-'));
  write(
    'tsconfig.json',
    '{ // comments are fine\n "compilerOptions": { "rootDir": "src", "outDir": "dist", /* x */ "module": "commonjs", }, }',
  );
  writeModule('shape', SHAPE_V1);
  writeModule(
    'sub',
    `import { Shape } from './shape';\nexport class Square extends Shape { area(): number { return this.n * this.n; } }\n`,
  );
  write('dist/plain.js', "module.exports = function plain(x) { return 'p1:' + x; };\nmodule.exports.extra = 5;\n");
  write('lib/mapped.js', "exports.where = () => 'mapped';\n//# sourceMappingURL=mapped.js.map\n");
  write('lib/mapped.js.map', JSON.stringify({ version: 3, sources: ['../ts/mapped.ts'], mappings: '' }));
  write('ts/mapped.ts', "export const where = () => 'mapped';\n");
  engine = install({ root });
});
after(() => rmSync(root, { recursive: true, force: true }));

test('ids come from tsconfig rootDir/outDir, source maps, or the JS path', () => {
  require(join(root, 'dist/shape.js'));
  require(join(root, 'dist/plain.js'));
  require(join(root, 'lib/mapped.js'));
  const ids = engine.moduleIds();
  for (const id of ['src/shape.ts', 'src/plain.ts', 'ts/mapped.ts']) assert.ok(ids.includes(id), `${id} in ${ids.join(',')}`);
  assert.equal(engine.getVersion('src/plain.ts')?.source, '', 'no TS source on disk');
});

test('class facades: statics, accessors, subclasses and instanceof across a patch', async () => {
  const m = require(join(root, 'dist/shape.js'));
  const { Square } = require(join(root, 'dist/sub.js'));
  assert.equal(m.__esModule, true);
  const a = m.Shape.create(3);
  const sq = new Square(4);
  assert.equal(a.describe(), 'v1:3');
  assert.equal(a.double, 6);
  assert.equal(sq.area(), 16);
  assert.equal(m.default('x'), 'hello x');
  await apply({
    'src/shape.ts': SHAPE_V1.replace("'v1:'", "'v2:'")
      .replace('this.n * 2', 'this.n * 20')
      .replace("'hello '", "'hi '")
      .replace('version = 1', 'version = 2'),
  });
  assert.equal(a.describe(), 'v2:3', 'existing instance, new method');
  assert.equal(a.double, 60, 'accessor dispatches to the new version');
  assert.equal(sq.describe(), 'v2:4', 'subclass instance inherits the new method');
  assert.equal(sq.area(), 16);
  const b = new m.Shape(5);
  assert.ok(a instanceof m.Shape && b instanceof m.Shape && sq instanceof m.Shape);
  assert.equal(b.isShape(a), true, 'instanceof the local class inside the new version accepts old instances');
  assert.equal(a.isShape(b), true);
  assert.equal(m.Shape.made, 1, 'static state stays with the class importers hold');
  m.Shape.create(1);
  assert.equal(m.Shape.made, 2, "the new version's static method updates the same static state");
  assert.equal(m.default('x'), 'hi x');
  assert.equal(m.version, 2);
});

test('module.exports = function keeps its shape and dispatches', async () => {
  const plain = require(join(root, 'dist/plain.js'));
  assert.equal(plain('a'), 'p1:a');
  assert.equal(plain.extra, 5);
  await apply({ 'src/plain.ts': "module.exports = function plain(x) { return 'p2:' + x; };\nmodule.exports.extra = 6;\n" });
  assert.equal(plain('a'), 'p2:a');
  assert.equal(plain.extra, 6);
});

test('pin keeps work on its generation across awaits while a commit happens', async () => {
  const m = require(join(root, 'dist/shape.js'));
  const seen: number[] = [];
  const work = pin(async () => {
    seen.push(m.version);
    await new Promise((r) => setTimeout(r, 30));
    seen.push(m.version);
  });
  await apply({ 'src/shape.ts': SHAPE_V1.replace('version = 1', 'version = 3') });
  assert.equal(engine.liveGenerations().length, 2);
  assert.equal(
    engine.pin(() => m.version),
    3,
    'new pinned work sees the new generation',
  );
  // Work without a store (started while one generation was live, or never pinned) belongs to the
  // generation that was current when the patch began, until that generation drains.
  assert.equal(m.version, 2);
  await work;
  assert.deepEqual(seen, [2, 2]);
  assert.equal(engine.liveGenerations().length, 1);
  assert.equal(m.version, 3, 'once drained, unpinned code sees the current generation');
});

test('https requests are counted in flight and pinned like http ones', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lp-engine-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'k.pem'),
      '-out',
      join(dir, 'c.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
    ],
    { stdio: 'ignore' },
  );
  if (r.status !== 0) return t.skip('openssl not available');
  const m = require(join(root, 'dist/shape.js'));
  let release!: () => void;
  const gate = new Promise<void>((res) => (release = res));
  const seen: number[] = [];
  const server = https.createServer(
    { key: readFileSync(join(dir, 'k.pem')), cert: readFileSync(join(dir, 'c.pem')) },
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- an async request handler is what the engine must pin
    async (_req, res) => {
      seen.push(m.version);
      await gate;
      seen.push(m.version);
      res.end('ok');
    },
  );
  const port = await listen(server, t);
  const before = m.version;
  const done = new Promise<string>((res, rej) => {
    https
      .get({ host: '127.0.0.1', port, rejectUnauthorized: false, agent: false }, (resp) => {
        let body = '';
        resp.on('data', (d) => (body += d));
        resp.on('end', () => res(body));
      })
      .on('error', rej);
  });
  while (seen.length === 0) await new Promise((res) => setTimeout(res, 10));
  assert.equal(engine.liveGenerations().find((g) => g.current)?.inflight, 1);
  await apply({ 'src/shape.ts': SHAPE_V1.replace('version = 1', 'version = 4') });
  release();
  assert.equal(await done, 'ok');
  assert.deepEqual(seen, [before, before], 'the request kept its generation across the commit');
  assert.equal(
    engine.pin(() => m.version),
    4,
  );
});

test("an app's own 'close' listener on the last request of a replaced generation still runs on that generation", async (t) => {
  const m = require(join(root, 'dist/shape.js'));
  // The earlier tests' generations drained first: this request starts with one generation live.
  await waitWhile(() => engine.liveGenerations().length > 1, 200);
  assert.equal(engine.liveGenerations().length, 1);
  let release!: () => void;
  const gate = new Promise<void>((res) => (release = res));
  const atClose: number[] = [];
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- an async request handler is what the engine must pin
  const server = http.createServer(async (_req, res) => {
    // Runs when the response closes: the request is still in flight for its generation until the
    // app's own 'close' listeners are done.
    res.on('close', () => atClose.push(m.version));
    await gate;
    res.end('ok');
  });
  const port = await listen(server, t);
  const before = m.version;
  const done = new Promise<void>((res, rej) => {
    http.get({ host: '127.0.0.1', port, agent: false }, (r) => r.resume().on('end', () => res())).on('error', rej);
  });
  const inflight = (): number | undefined => engine.liveGenerations().find((g) => g.current)?.inflight;
  await waitWhile(() => inflight() !== 1, 500);
  assert.equal(inflight(), 1, 'the request is in flight');
  await apply({ 'src/shape.ts': SHAPE_V1.replace('version = 1', 'version = 5') });
  release();
  await done;
  await waitWhile(() => atClose.length === 0, 500);
  assert.deepEqual(atClose, [before], 'the listener saw the code its request started on');
  // And the replaced generation is still released once that is over.
  await waitWhile(() => engine.liveGenerations().length > 1, 100);
  assert.equal(engine.liveGenerations().length, 1);
  assert.equal(m.version, 5);
});

test("each response is counted once in its generation's health: finished, torn down, emitted twice, and from a response class with its own emit", async (t) => {
  /** A response class that overrides `emit` (so it does not inherit the engine's wrapped one). */
  class OwnEmit extends http.ServerResponse {
    override emit(event: string | symbol, ...args: unknown[]): boolean {
      return super.emit(event, ...args);
    }
  }
  let hung = 0;
  const handler: http.RequestListener = (req, res) => {
    if (req.url === '/hang') {
      hung++;
      return; // never answers: the client goes away
    }
    res.statusCode = req.url === '/teapot' ? 418 : 200;
    res.end('ok');
  };
  const plain = http.createServer(handler);
  const own = http.createServer({ ServerResponse: OwnEmit as unknown as typeof http.ServerResponse }, handler);
  for (const s of [plain, own]) await listen(s, t);
  const get = (server: http.Server, path: string): Promise<number> =>
    new Promise((res, rej) => {
      http
        .get({ host: '127.0.0.1', port: portOf(server), path, agent: false }, (r) => {
          r.resume();
          r.on('end', () => res(r.statusCode ?? 0));
        })
        .on('error', rej);
    });
  const figures = () => {
    const g = engine.liveGenerations().find((x) => x.current)!;
    return { inflight: g.inflight, ...g.health! };
  };
  /** Until the server side has counted everything (its 'close' comes a turn after the client's end). */
  const settled = async (want: number) => {
    await waitWhile(() => figures().requests !== want || figures().inflight !== 0, 200);
    return figures();
  };
  const before = figures();
  assert.equal(await get(plain, '/'), 200);
  assert.equal(await get(plain, '/teapot'), 418);
  assert.equal(await get(own, '/'), 200);
  assert.equal(await get(own, '/teapot'), 418);
  let after = await settled(before.requests + 4);
  assert.equal(after.requests - before.requests, 4, 'each response counted once');
  assert.equal(after.status['2xx'] - before.status['2xx'], 2);
  assert.equal(after.status['4xx'] - before.status['4xx'], 2);
  assert.equal(after.inflight, 0, 'nothing left in flight');
  // A server that hands its requests to another server's listeners (the same response emitted twice):
  // counted once, and not left in flight.
  const front = http.createServer((req, res) => plain.emit('request', req, res));
  await listen(front, t);
  assert.equal(await get(front, '/'), 200);
  const forwarded = await settled(after.requests + 1);
  assert.equal(forwarded.requests - after.requests, 1, 'a response emitted twice is counted once');
  assert.equal(forwarded.inflight, 0, 'and is not left in flight');
  after = forwarded;
  // A request whose client goes away before the answer: in flight until then, then counted as torn down.
  for (const server of [plain, own]) {
    const req = http.get({ host: '127.0.0.1', port: portOf(server), path: '/hang', agent: false });
    req.on('error', () => undefined);
    const was = hung;
    while (hung === was) await new Promise((r) => setTimeout(r, 10));
    assert.equal(figures().inflight, 1);
    req.destroy();
    const destroyed = after.destroyed;
    after = await settled(after.requests + 1);
    assert.equal(after.destroyed - destroyed, 1, 'counted once, as torn down');
    assert.equal(after.inflight, 0);
  }
});

test('install is idempotent', () => {
  assert.equal(install({ root: tmpdir() }), engine);
});
