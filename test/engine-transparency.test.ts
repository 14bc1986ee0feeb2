/**
 * Transparency before any patch, and honest reach after: the patterns frameworks rely on, with the
 * engine installed in this test process over real files on disk (offline twin of the framework
 * fixtures and of `npm run peer`): ES5 constructors, `Object.create` exports, functions with own
 * symbols and properties, accessor exports, decorator metadata, class identity; then patches that
 * reach captured references, and patches refused because a commit could not reach them or because
 * their top level would start something twice — leaving nothing behind.
 */
import 'reflect-metadata';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Session } from 'node:inspector';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as ts from 'typescript';
import { install } from '../server/engine';
import type { Engine } from '../server/engine/types';
import { LivepatchError } from '../shared/errors';

let root: string;
let engine: Engine;

const js = (id: string, source: string): string =>
  ts.transpileModule(source, {
    fileName: id,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.CommonJS,
      esModuleInterop: true,
      experimentalDecorators: true,
      emitDecoratorMetadata: true,
    },
  }).outputText;
const write = (rel: string, text: string): void => {
  mkdirSync(dirname(join(root, rel)), { recursive: true });
  writeFileSync(join(root, rel), text);
};
/** Write src/<name>.ts and its compiled dist/<name>.js (or a plain JS module when `plain`). */
const writeModule = (name: string, source: string, plain = false): void => {
  write(`src/${name}.ts`, source);
  write(`dist/${name}.js`, plain ? source : js(`src/${name}.ts`, source));
};
const load = (name: string): any => require(join(root, `dist/${name}.js`));
const apply = async (name: string, source: string, plain = false): Promise<void> => {
  engine.commit(await engine.stage([{ id: `src/${name}.ts`, source, js: plain ? source : js(`src/${name}.ts`, source) }]));
};
const refused = async (name: string, source: string, plain = false): Promise<LivepatchError> => {
  try {
    await engine.stage([{ id: `src/${name}.ts`, source, js: plain ? source : js(`src/${name}.ts`, source) }]);
  } catch (e) {
    assert.ok(e instanceof LivepatchError, String(e));
    return e;
  }
  assert.fail('the patch was staged');
};

const ES5 = `function Counter(start) { this.n = start; }
Counter.prototype.next = function next() { return 'v1:' + (++this.n); };
Counter.create = function (s) { return new Counter(s); };
module.exports = Counter;
`;
const PROTO = `const { EventEmitter } = require('node:events');
const res = Object.create(EventEmitter.prototype);
res.send = function send(x) { return 'sent1:' + x; };
module.exports = res;
`;
const SYMBOLS = `function plugin(app) { return 'plugin1:' + app; }
plugin[Symbol.for('skip-override')] = true;
plugin[Symbol.for('plugin-meta')] = { name: 'p' };
plugin.stack = [];
module.exports = plugin;
`;
const ACCESSORS = `let hits = 0;
function impl() { return 'impl1'; }
Object.defineProperty(exports, 'value', { enumerable: true, get: function () { hits++; return impl(); } });
exports.hits = () => hits;
exports.self = () => module.exports;
`;
const DECORATED = `const Route = (path: string): MethodDecorator => (target, key) => { Reflect.defineMetadata('route', path, target, key); };
const Service = (): ClassDecorator => (target) => { Reflect.defineMetadata('service', true, target); };
export class Dep { id = 'dep'; }
@Service()
export class Svc {
  constructor(public dep: Dep) {}
  @Route('/hello') hello(name: string): string { return 'hello1 ' + name + ' ' + this.dep.id; }
}
`;
const PLUGIN = `export default async function routes(app: { get(p: string, h: () => string): void }) {
  app.get('/x', () => 'inline1');
}
export function handler(): string { return 'named1'; }
`;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'lp-engine-transparency-'));
  write('tsconfig.json', '{ "compilerOptions": { "rootDir": "src", "outDir": "dist" } }');
  writeModule('es5', ES5, true);
  writeModule('proto', PROTO, true);
  writeModule('symbols', SYMBOLS, true);
  writeModule('accessors', ACCESSORS, true);
  writeModule('decorated', DECORATED);
  writeModule('plugin', PLUGIN);
  writeModule('server', "const http = require('node:http');\nexports.start = function start() { return 'start1'; };\n", true);
  engine = install({ root });
});
after(() => rmSync(root, { recursive: true, force: true }));

test('before any patch, importers get exactly what the module made', () => {
  const Counter = load('es5');
  const c = new Counter(1);
  assert.equal(c.next(), 'v1:2', 'ES5 constructor builds objects with its prototype methods');
  assert.ok(c instanceof Counter);
  assert.equal(Object.getPrototypeOf(c), Counter.prototype);
  assert.equal(Counter.create(5).next(), 'v1:6');

  const res = load('proto');
  assert.ok(res instanceof EventEmitter, 'an Object.create export keeps its prototype chain');
  assert.equal(Object.getPrototypeOf(res), EventEmitter.prototype);

  const plugin = load('symbols');
  assert.equal(plugin[Symbol.for('skip-override')], true, 'own symbols of an exported function');
  assert.deepEqual(plugin[Symbol.for('plugin-meta')], { name: 'p' });
  assert.deepEqual(plugin.stack, []);
  plugin.later = 'x';
  assert.equal(load('symbols').later, 'x', 'later writes show: importers share the object');

  const acc = load('accessors');
  assert.equal(typeof Object.getOwnPropertyDescriptor(acc, 'value')?.get, 'function', 'accessor export stays an accessor');
  assert.equal(acc.value, 'impl1');
  assert.equal(acc.self(), acc, 'a module sees of its own exports what importers see');

  const { Svc, Dep } = load('decorated');
  assert.equal(Reflect.getMetadata('service', Svc), true, 'class decorator metadata');
  assert.equal(Reflect.getMetadata('route', Svc.prototype, 'hello'), '/hello', 'method decorator metadata');
  assert.deepEqual(Reflect.getMetadata('design:paramtypes', Svc), [Dep], 'emitDecoratorMetadata parameter types (DI)');
  assert.equal(new Svc(new Dep()).hello('a'), 'hello1 a dep');
  assert.equal(engine.getVersion('src/decorated.ts')?.version, 1);
});

const NAMES = `const here = () => /at (?:async )?(.*?) \\(/.exec(new Error('x').stack.split('\\n')[2])?.[1] ?? '<anonymous>';
exports.viaExports = function () { return here(); };
module.exports.handler = async (req) => here();
const plain = function () { return here(); };
const arrow = (a, b) => here();
const Shop = function () {};
Shop.prototype.total = function () { return here(); };
const Kept = class { m() { return here(); } };
exports.Assigned = class { m() { return here(); } };
const table = { value: () => here() };
const run = (f) => f();
const inCall = () => run(() => here());
exports.all = async () => [exports.viaExports(), await module.exports.handler(), plain(), arrow(), new Shop().total(), new Kept().m(),
  new exports.Assigned().m(), table.value(), inCall(), Shop.name, Kept.name, exports.Assigned.name, arrow.length, String(new Shop().constructor.name)];
`;

test('V8 names functions and classes as without livepatch: stack traces, profiles and constructor names', async () => {
  // The same module outside the root is not live: it runs as it would without livepatch.
  const outside = mkdtempSync(join(tmpdir(), 'lp-engine-names-'));
  try {
    writeFileSync(join(outside, 'names.js'), NAMES);
    const expected = (await require(join(outside, 'names.js')).all()) as unknown[];
    writeModule('names', NAMES, true);
    const live = (await load('names').all()) as unknown[];
    assert.equal(engine.getVersion('src/names.ts')?.version, 1, 'the module is live');
    assert.deepEqual(expected.slice(0, 9), [
      'exports.viaExports',
      'module.exports.handler',
      'plain',
      'arrow',
      'Shop.total',
      'Kept.m',
      'exports.Assigned.m',
      'Object.value',
      '<anonymous>',
    ]);
    assert.deepEqual(live, expected);
  } finally {
    rmSync(outside, { recursive: true, force: true });
  }
});

const PROFILED = `const spin = () => { const t = process.cpuUsage().user; while (process.cpuUsage().user - t < 20000); };
const table = { value: () => spin(), other: function () { spin(); } };
exports.viaExports = function () { spin(); };
const arrow = () => spin();
const Shop = function () {};
Shop.prototype.total = function () { spin(); };
const Kept = class { m() { spin(); } };
const run = (f) => f();
exports.all = () => { table.value(); table.other(); exports.viaExports(); arrow(); new Shop().total(); new Kept().m(); run(() => spin()); };
`;

/**
 * The names a CPU profile (the inspector's Profiler) gives the functions of `file` that call its
 * `spin` while `fn` runs: only callers of `spin`, which every sample inside it names, so a frame too
 * short to be sampled reliably (a constructor) does not make the list flaky.
 */
async function profiledNames(file: string, fn: () => void): Promise<string[]> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<any> =>
    new Promise((res, rej) => session.post(method, params, (err, r) => (err ? rej(err) : res(r))));
  try {
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 200 });
    await post('Profiler.start');
    // Every function spins for 20 ms of CPU, three times over: each is sampled many times.
    for (let i = 0; i < 3; i++) fn();
    const { profile } = await post('Profiler.stop');
    type ProfileNode = { id: number; children?: number[]; callFrame: { url: string; functionName: string } };
    const nodes = profile.nodes as ProfileNode[];
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const names = new Set<string>();
    for (const n of nodes) {
      if (!n.callFrame.url.endsWith(file)) continue;
      const callsSpin = (n.children ?? []).some((c) => byId.get(c)?.callFrame.functionName === 'spin');
      if (callsSpin) names.add(n.callFrame.functionName || '(anonymous)');
    }
    return [...names].sort();
  } finally {
    session.disconnect();
  }
}

test('CPU profiles name functions as without livepatch', async () => {
  const outside = mkdtempSync(join(tmpdir(), 'lp-engine-profiled-'));
  try {
    writeFileSync(join(outside, 'profiled-plain.js'), PROFILED);
    const expected = await profiledNames('profiled-plain.js', () => require(join(outside, 'profiled-plain.js')).all());
    writeModule('profiled', PROFILED, true);
    const live = await profiledNames('profiled.js', () => load('profiled').all());
    assert.equal(engine.getVersion('src/profiled.ts')?.version, 1, 'the module is live');
    for (const name of ['value', 'other', 'exports.viaExports', 'arrow', 'Shop.total', 'm'])
      assert.ok(expected.includes(name), `${name} in ${expected.join(', ')}`);
    assert.deepEqual(live, expected);
    // A function registered through its object is still reached by a patch, through a captured reference.
    const v1 = `exports.table = { greet: (n, punct = '!') => 'v1:' + n + punct, other: function () { return 'o1'; } };\n`;
    writeModule('table', v1, true);
    const { greet, other } = load('table').table;
    assert.equal(greet.length, 1);
    await apply('table', v1.replace("'v1:'", "'v2:'").replace("'o1'", "'o2'"), true);
    assert.equal(greet('x'), 'v2:x!');
    assert.equal(other(), 'o2');
  } finally {
    rmSync(outside, { recursive: true, force: true });
  }
});

test('a module left as it is (not live) runs as it would without livepatch, keep() included', () => {
  const server = JSON.stringify(join(__dirname, '..', 'server'));
  // Over LIVEPATCH_MAX_MODULE_BYTES: loaded as it is, and its top-level keep() is init().
  const big = `const { keep } = require(${server});\nconst store = keep('store', () => ({ n: 0 }));\nexports.hit = () => ++store.n;\n// ${'x'.repeat(400)}\n`;
  writeModule('big', big, true);
  process.env['LIVEPATCH_MAX_MODULE_BYTES'] = String(big.length - 1);
  let mod: { hit(): number };
  try {
    mod = load('big');
  } finally {
    delete process.env['LIVEPATCH_MAX_MODULE_BYTES'];
  }
  assert.equal(mod.hit(), 1);
  assert.equal(mod.hit(), 2);
  assert.equal(engine.getVersion('src/big.ts'), undefined, 'the module is not live');
  // The same while a live module that requires it is loading: each keeps its own value.
  const vendor = `const { keep } = require(${server});\nexports.v = keep('store', () => 'vendor');\n// ${'x'.repeat(400)}\n`;
  writeModule('vendor', vendor, true);
  writeModule(
    'outer',
    `const { keep } = require(${server});\nconst mine = keep('store', () => 'outer');\nconst { v } = require('./vendor');\nexports.both = () => [mine, v];\n`,
    true,
  );
  process.env['LIVEPATCH_MAX_MODULE_BYTES'] = String(vendor.length - 1);
  let outer: { both(): string[] };
  try {
    outer = load('outer');
  } finally {
    delete process.env['LIVEPATCH_MAX_MODULE_BYTES'];
  }
  assert.equal(engine.getVersion('src/outer.ts')?.version, 1);
  assert.equal(engine.getVersion('src/vendor.ts'), undefined);
  assert.deepEqual(outer.both(), ['outer', 'vendor'], "the live module's kept value is its own, and so is the other module's");
  // A live module calling keep() after its load is still told how keep() is meant to be used.
  writeModule('late', `const { keep } = require(${server});\nexports.later = () => keep('x', () => 1);\n`, true);
  assert.ok(engine.getVersion('src/late.ts') === undefined);
  const late = load('late');
  assert.equal(engine.getVersion('src/late.ts')?.version, 1);
  assert.throws(() => late.later(), /keep\(\) must be called at the top level of a live module/);
});

test('patches reach captured references, existing instances and new instances', async () => {
  const Counter = load('es5');
  const old = new Counter(10);
  const next = old.next;
  await apply('es5', ES5.replace("'v1:'", "'v2:'"), true);
  assert.equal(old.next(), 'v2:11', 'an instance built before the patch runs the new method');
  assert.equal(next.call(old), 'v2:12', 'a captured method reference runs the new code');
  assert.equal(new Counter(0).next(), 'v2:1');
  assert.equal(Counter.create(0).next(), 'v2:1', 'a static factory of the new version');
  assert.ok(Counter.create(0) instanceof Counter);

  const res = load('proto');
  const send = res.send;
  await apply('proto', PROTO.replace("'sent1:'", "'sent2:'"), true);
  assert.equal(send('a'), 'sent2:a');
  assert.ok(load('proto') instanceof EventEmitter);

  const acc = load('accessors');
  await apply('accessors', ACCESSORS.replace("return 'impl1'", "return 'impl2'"), true);
  assert.equal(acc.value, 'impl2', 'the accessor export reaches the new getter');

  const { Svc, Dep } = load('decorated');
  const svc = new Svc(new Dep());
  await apply('decorated', DECORATED.replace("'hello1 '", "'hello2 '"));
  assert.equal(svc.hello('b'), 'hello2 b dep', 'a decorated method of a DI-made instance');
  assert.equal(Reflect.getMetadata('route', Svc.prototype, 'hello'), '/hello', 'the live class keeps its metadata');
  assert.deepEqual(Reflect.getMetadata('design:paramtypes', Svc), [Dep]);

  const plugin = load('plugin');
  const named = plugin.handler;
  await apply('plugin', PLUGIN.replace("'named1'", "'named2'"));
  assert.equal(named(), 'named2', 'a top-level handler captured by a router reaches the new code');
});

test('changes a commit could not reach are refused before anything runs, naming module and line', async () => {
  const plugin = load('plugin');
  const routes: Record<string, () => string> = {};
  await plugin.default({ get: (p: string, h: () => string) => void (routes[p] = h) });
  const e = await refused('plugin', PLUGIN.replace("'inline1'", "'inline2'").replace("'named1'", "'named2'"));
  assert.equal(e.code, 'LP_ERR_PATCH_UNREACHABLE');
  const d = (e.details as { diagnostics: { file: string; line: number; message: string; lpCode: string }[] }).diagnostics[0]!;
  assert.equal(d.file, 'src/plugin.ts');
  assert.equal(d.line, 1);
  assert.equal(d.lpCode, 'LP_ERR_PATCH_UNREACHABLE');
  assert.match(d.message, /routes\(\) registers handlers when it runs \(app\.get\(\)\)/);
  assert.equal(routes['/x']!(), 'inline1', 'nothing changed');

  load('server');
  const route = await refused(
    'server',
    "const http = require('node:http');\nexports.start = function start() { return 'start1'; };\nhttp.createServer().on('request', () => {});\n",
    true,
  );
  assert.equal(route.code, 'LP_ERR_PATCH_UNREACHABLE', 'a new top-level statement');

  const dec = await refused('decorated', DECORATED.replace("@Route('/hello')", "@Route('/hi')"));
  assert.equal(dec.code, 'LP_ERR_PATCH_UNREACHABLE', 'changed decorators');
  assert.equal(
    engine.verdict!([{ id: 'src/plugin.ts', js: js('src/plugin.ts', PLUGIN.replace("'inline1'", "'x'")) }])[0]?.lpCode,
    'LP_ERR_PATCH_UNREACHABLE',
    'check gives the same verdict',
  );
});

test('a stage whose code starts timers, replaces globals, listens or exits is refused and leaves nothing behind', async () => {
  const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const setTimeoutBefore = globalThis.setTimeout;
  const fetchBefore = (globalThis as any).fetch;
  const base = "exports.start = function start() { return 'start1'; };\n";
  const listen = await refused('server', `${base}require('node:http').createServer().listen(0);\n`, true);
  assert.equal(listen.code, 'LP_ERR_PATCH_EFFECT');
  // Effects hidden from the static check (inside a helper called at top level) are caught while staging.
  const hidden = `${base}const boot = () => { setInterval(() => { throw new Error('tick'); }, 5); (globalThis as any).fetch = () => 'evil'; };\nexport const booted = boot();\n`;
  const e = await refused('server', js('src/server.ts', hidden), true);
  assert.equal(e.code, 'LP_ERR_PATCH_EFFECT');
  assert.match(e.message, /src\/server\.ts: top-level code called setInterval\(\)/);
  const exit = await refused('server', `${base}const bye = () => process.exit(3);\nexport const x = bye();\n`);
  assert.equal(exit.code, 'LP_ERR_PATCH_EFFECT');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, timersBefore, 'no timer left ticking');
  assert.equal((globalThis as any).fetch, fetchBefore, 'global restored');
  assert.equal(globalThis.setTimeout, setTimeoutBefore, "Node's own setTimeout again once no stage exists");
  assert.equal(load('server').start(), 'start1');
  // A discarded stage (a dry run) undoes what its verify hook started.
  const staged = await engine.stage([{ id: 'src/server.ts', source: base, js: base.replace('start1', 'start2') }], {
    verifyJs: 'exports.v = () => { setInterval(() => {}, 1000); };',
  });
  engine.discard(staged);
  assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, timersBefore, 'verify hook interval cleared');
  assert.equal(load('server').start(), 'start1');
});
