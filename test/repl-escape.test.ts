/**
 * Read-only evaluation must not run the caller's code, or code reachable from the caller's value,
 * outside V8's side-effect check — not while evaluating, rendering the result, inspecting a thrown
 * value or describing it. Each attempt goes through a raw WebSocket with a read (or patch) token to a
 * real app child process; its payload, if it ever ran unchecked, would create a marker file and hand
 * back the tokens file or exit the host. After each attempt: no marker, no secret in the reply, the
 * reply is a refusal or a harmless rendering, the host still serves HTTP and evaluations, and the
 * attempt is in the audit log.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { bootAgentApp, openAuthed, rawRequest, readAudit, type AgentApp, type RawClient } from './helpers/raw-client';

let a: AgentApp | undefined;
let clients: { read: RawClient; patch: RawClient; admin: RawClient } | undefined;
let markers = '';
/** Strings from the tokens file (ids, salts, keys) that must never appear in a reply. */
let secrets: string[] = [];
let seq = 0;
const booted: AgentApp[] = [];

/** Host-realm objects the app could hold, each of whose hooks leaves a marker if it is ever run. */
function appObjects(dir: string): string {
  return `(() => {
  const p = process;
  const fs = p.getBuiltinModule ? p.getBuiltinModule('node:fs') : p.mainModule.require('node:fs');
  const hit = (tag) => {
    fs.writeFileSync(${JSON.stringify(dir)} + '/app-' + tag, 'x');
    return 'GETTER-RAN:' + fs.readFileSync(p.env.LIVEPATCH_TOKENS, 'utf8');
  };
  class AppError extends Error {
    get message() { return hit('error-message'); }
    get name() { return hit('error-name'); }
  }
  class StackError extends Error {
    constructor() { super('plain'); delete this.stack; }
    get stack() { return hit('error-stack'); }
  }
  const trap = (tag) => () => { hit('proxy-' + tag); return undefined; };
  const proxy = new Proxy({ x: 1 }, {
    get: trap('get'), has: trap('has'), ownKeys: trap('ownKeys'), getOwnPropertyDescriptor: trap('gopd'),
    getPrototypeOf: trap('getPrototypeOf'), apply: trap('apply'),
  });
  const withCtor = Object.create({ get constructor() { return hit('ctor'); } });
  withCtor.x = 1;
  globalThis.__lpApp = {
    error: new AppError(),
    stackError: new StackError(),
    proxy,
    nested: { a: { b: { get c() { return hit('nested'); } } } },
    withCtor,
    thenable: { get then() { hit('then'); return undefined; } },
    tagged: { get [Symbol.toStringTag]() { return hit('tag'); } },
    hooks: {
      [Symbol.for('nodejs.util.inspect.custom')]() { return hit('inspect-custom'); },
      toJSON() { return hit('tojson'); },
      [Symbol.toPrimitive]() { return hit('toprimitive'); },
      toString() { return hit('tostring'); },
    },
  };
  // An app formatter (as source-map tools install): it must never be asked to format the caller's errors.
  Error.prepareStackTrace = (e, frames) => {
    const own = Object.getOwnPropertyDescriptor(e, 'message');
    if (own && typeof own.value === 'string' && own.value.includes('lp-escape')) hit('prepare-stack');
    return 'Error: ' + (own ? String(own.value) : '') + frames.map((f) => '\\n    at ' + f).join('');
  };
  return 'installed';
})()`;
}

/** Set once boot() has installed the app objects: a host without them cannot judge an attempt. */
let ready = false;

async function boot(): Promise<void> {
  ready = false;
  a = await bootAgentApp();
  booted.push(a);
  markers = join(a.project.root, 'markers');
  mkdirSync(markers);
  secrets = [];
  const collect = (v: unknown): void => {
    if (typeof v === 'string' && v.length >= 16) secrets.push(v);
    else if (v && typeof v === 'object') for (const x of Object.values(v)) collect(x);
  };
  collect(JSON.parse(readFileSync(a.tokens.file, 'utf8')));
  assert.ok(secrets.length >= 3, 'the tokens file holds secrets to look for');
  clients = {
    read: await openAuthed(a.address, a.tokens.read),
    patch: await openAuthed(a.address, a.tokens.patch),
    admin: await openAuthed(a.address, a.tokens.admin),
  };
  // The first evaluation starts the type checker (seconds on a busy machine): wait longer than rawRequest does.
  const id = ++seq;
  clients.admin.send(
    JSON.stringify({
      type: 'request',
      id,
      op: 'eval',
      args: { code: `require('node:vm').runInThisContext(${JSON.stringify(appObjects(markers))})` },
    }),
  );
  const setup = await clients.admin.next((m) => m.type === 'reply' && m.id === id, 60_000);
  assert.equal(setup.ok, true, JSON.stringify(setup));
  assert.equal(setup.result.output, "'installed'");
  ready = true;
}

/**
 * A previous attempt may have killed the host or its agent (a failure already reported): then start a
 * fresh one, so each attempt is judged on its own.
 */
async function ensureHost(): Promise<void> {
  const child = a?.app.child;
  const open = clients && Object.values(clients).every((c) => c.ws.readyState === c.ws.OPEN);
  if (ready && a && child && child.exitCode === null && child.signalCode === null && open) return;
  await a?.app.stop();
  await boot();
}

/** A payload that, run unchecked, leaves marker `tag` and returns the tokens file. */
function evil(tag: string): string {
  const file = JSON.stringify(join(markers, tag));
  return `(() => { const p: any = (globalThis as any).process; const fs = p.getBuiltinModule ? p.getBuiltinModule('node:fs') : p.mainModule.require('node:fs'); fs.writeFileSync(${file}, 'x'); return 'GETTER-RAN:' + fs.readFileSync(p.env.LIVEPATCH_TOKENS, 'utf8'); })()`;
}

const EXIT = '(globalThis as any).process.exit(42)';
const APP = '(globalThis as any).__lpApp';

type Outcome = 'ok' | 'LP_ERR_EVAL_SIDE_EFFECT' | 'LP_ERR_EVAL_THROWN' | 'LP_ERR_EVAL_TYPE';

interface Attempt {
  name: string;
  code: () => string;
  /** Acceptable outcomes (default: ok or a side-effect refusal). */
  outcomes?: Outcome[];
  /** When ok, the rendering must equal this. */
  output?: string;
  /** When thrown, the message must equal this. */
  message?: string;
}

const attempts: Attempt[] = [
  {
    name: 'Symbol.toStringTag getter on a class instance',
    code: () => `class T {\n  get [Symbol.toStringTag](): string { return ${evil('tag')}; }\n}\nnew T()`,
    output: 'T {}',
  },
  {
    name: 'Symbol.toStringTag getter that exits the host',
    code: () => `class T {\n  get [Symbol.toStringTag](): string { ${EXIT}; return 'x'; }\n}\nnew T()`,
    output: 'T {}',
  },
  {
    name: 'thrown object with message and name getters',
    code: () =>
      `class X {\n  get message(): string { return ${evil('message')}; }\n  get name(): string { return ${evil('name')}; }\n}\nthrow new X()`,
    outcomes: ['LP_ERR_EVAL_THROWN'],
    message: 'X {}',
  },
  {
    name: 'thrown object whose message getter exits the host',
    code: () => `class X {\n  get message(): string { ${EXIT}; return 'x'; }\n}\nthrow new X()`,
    outcomes: ['LP_ERR_EVAL_THROWN'],
    message: 'X {}',
  },
  {
    name: 'toJSON on a result, nested and thrown',
    code: () => `class J {\n  toJSON(): string { return ${evil('tojson')}; }\n}\nconst j = new J();\n({ j, list: [j] })`,
    output: '{ j: J {}, list: [ J {} ] }',
  },
  {
    name: 'toJSON on a thrown value',
    code: () => `class J {\n  toJSON(): string { return ${evil('tojson-thrown')}; }\n}\nthrow new J()`,
    outcomes: ['LP_ERR_EVAL_THROWN'],
    message: 'J {}',
  },
  {
    name: 'Symbol.toPrimitive, toString and valueOf on a result',
    code: () =>
      `class P {\n  [Symbol.toPrimitive](): string { return ${evil('toprimitive')}; }\n  toString(): string { return ${evil('tostring')}; }\n  valueOf(): string { return ${evil('valueof')}; }\n}\n[new P()]`,
    output: '[ P {} ]',
  },
  {
    name: 'Symbol.toPrimitive and toString on a thrown value',
    code: () =>
      `class P {\n  [Symbol.toPrimitive](): string { return ${evil('toprimitive-thrown')}; }\n  toString(): string { return ${evil('tostring-thrown')}; }\n}\nthrow new P()`,
    outcomes: ['LP_ERR_EVAL_THROWN'],
    message: 'P {}',
  },
  {
    // Symbol.for may register a symbol, so V8 refuses it: the method cannot even be defined.
    name: 'inspect.custom on a result',
    code: () => `class I {\n  [Symbol.for('nodejs.util.inspect.custom')](): string { return ${evil('inspect-custom')}; }\n}\nnew I()`,
    outcomes: ['LP_ERR_EVAL_SIDE_EFFECT'],
  },
  {
    name: 'inspect.custom nested and thrown',
    code: () =>
      `class I {\n  [Symbol.for('nodejs.util.inspect.custom')](): string { return ${evil('inspect-custom-thrown')}; }\n}\nthrow { inner: new I() }`,
    outcomes: ['LP_ERR_EVAL_SIDE_EFFECT'],
  },
  {
    name: 'an app object with inspect.custom, toJSON, Symbol.toPrimitive and toString, returned',
    code: () => `[${APP}.hooks]`,
  },
  {
    name: 'an app object with inspect.custom, toJSON, Symbol.toPrimitive and toString, thrown',
    code: () => `throw ${APP}.hooks`,
    outcomes: ['LP_ERR_EVAL_THROWN'],
  },
  {
    name: 'Error.prepareStackTrace replaced by the caller',
    code: () => `Error.prepareStackTrace = () => ${evil('prepare-own')};\nnew Error('x').stack`,
    outcomes: ['LP_ERR_EVAL_SIDE_EFFECT'],
  },
  {
    name: "an error returned while the app's stack formatter is installed",
    code: () => `new Error('lp-escape')`,
    output: '[Error: lp-escape]',
  },
  {
    name: "an error thrown while the app's stack formatter is installed",
    code: () => `throw new Error('lp-escape')`,
    outcomes: ['LP_ERR_EVAL_THROWN'],
    message: 'Error: lp-escape',
  },
  {
    name: 'an error nested in a result',
    code: () => `({ e: new TypeError('lp-escape'), list: [new RangeError('lp-escape')] })`,
    output: '{ e: [TypeError: lp-escape], list: [ [RangeError: lp-escape] ] }',
  },
  {
    name: 'an app error with message/name getters, returned',
    code: () => `${APP}.error`,
    output: '[AppError]',
  },
  {
    name: 'an app error with message/name getters, thrown',
    code: () => `throw ${APP}.error`,
    outcomes: ['LP_ERR_EVAL_THROWN'],
    message: '[AppError]',
  },
  {
    name: 'an app error whose stack is a getter, returned and thrown',
    code: () => `throw [${APP}.stackError]`,
    outcomes: ['LP_ERR_EVAL_THROWN', 'LP_ERR_EVAL_SIDE_EFFECT'],
  },
  {
    name: 'an app error whose stack is a getter, as the result',
    code: () => `${APP}.stackError`,
    output: '[Error: plain]',
  },
  {
    name: 'a Proxy created by the caller',
    code: () => `new Proxy({}, { get: () => ${evil('own-proxy')}, ownKeys: () => [${evil('own-proxy-keys')}] })`,
    outcomes: ['LP_ERR_EVAL_SIDE_EFFECT'],
  },
  {
    name: 'an app Proxy as the result',
    code: () => `${APP}.proxy`,
    // Its traps would write a file: V8 refuses them when the renderer reaches them.
    outcomes: ['LP_ERR_EVAL_SIDE_EFFECT'],
  },
  {
    name: 'an app Proxy nested in the result',
    code: () => `({ p: ${APP}.proxy })`,
    // Its traps would write a file: V8 refuses them when the renderer reaches them.
    outcomes: ['LP_ERR_EVAL_SIDE_EFFECT'],
  },
  {
    name: 'an app Proxy thrown',
    code: () => `throw ${APP}.proxy`,
    outcomes: ['LP_ERR_EVAL_SIDE_EFFECT'],
  },
  {
    name: 'a thenable whose then is a getter',
    code: () => `class Th {\n  get then(): undefined { ${evil('then')}; return undefined; }\n}\nnew Th()`,
    output: 'Th {}',
  },
  {
    name: 'an app thenable whose then is a getter',
    code: () => `${APP}.thenable`,
    output: '{ then: [Getter] }',
  },
  {
    name: 'an object literal whose constructor is a getter',
    code: () => `({ get constructor(): unknown { return ${evil('ctor')}; } })`,
    outcomes: ['LP_ERR_EVAL_SIDE_EFFECT'],
  },
  {
    name: "an app object whose prototype's constructor is a getter",
    code: () => `[${APP}.withCtor]`,
    output: '[ { x: 1 } ]',
  },
  {
    name: 'a getter on a nested property',
    code: () => `class G {\n  get c(): string { return ${evil('nested')}; }\n}\n({ a: { b: new G() } })`,
    output: '{ a: { b: G {} } }',
  },
  {
    name: 'an app object with a getter on a nested property',
    code: () => `${APP}.nested`,
    output: '{ a: { b: { c: [Getter] } } }',
  },
  {
    name: 'an app object with a Symbol.toStringTag getter',
    code: () => `${APP}.tagged`,
    output: '{ [Symbol(Symbol.toStringTag)]: [Getter] }',
  },
  {
    name: 'a class instance with a getter on its prototype',
    code: () => `class A {\n  n = 1;\n  get secret(): string { return ${evil('proto-getter')}; }\n}\nnew A()`,
    output: 'A { n: 1 }',
  },
  {
    name: 'a class (its static getter) as the result',
    code: () => `class S {\n  static get secret(): string { return ${evil('static-getter')}; }\n}\nS`,
    output: '[class S]',
  },
  {
    name: 'code that tries to close the evaluation wrapper',
    code: () => `} catch (e) {} ${APP}.error; {`,
    outcomes: ['LP_ERR_EVAL_TYPE'],
  },
];

before(boot);

after(async () => {
  for (const app of booted) await app.stop();
});

async function attempt(role: 'read' | 'patch', t: Attempt): Promise<void> {
  await ensureHost();
  const c = clients![role];
  const code = t.code();
  const reply = await rawRequest(c, ++seq, 'eval', { code });
  const text = JSON.stringify(reply);
  // Nothing ran unchecked: no marker, no secret, no payload output.
  const left = readdirSync(markers);
  // Cleared at once, so one escape does not fail the attempts after it.
  for (const m of left) rmSync(join(markers, m));
  assert.deepEqual(left, [], `a payload ran: ${text}`);
  assert.ok(!text.includes('GETTER-RAN'), text);
  for (const s of secrets) assert.ok(!text.includes(s), `the reply holds a secret of the tokens file: ${text}`);
  // The host is alive and still answers HTTP and evaluations.
  assert.deepEqual(await a!.app.get('/health'), { ok: true });
  const again = await rawRequest(c, ++seq, 'eval', { code: '1 + 1' });
  assert.deepEqual([again.ok, again.result?.output], [true, '2'], JSON.stringify(again));
  // The outcome is a refusal or a harmless rendering.
  const outcome: Outcome = reply.ok ? 'ok' : reply.error?.code;
  assert.ok((t.outcomes ?? ['ok', 'LP_ERR_EVAL_SIDE_EFFECT']).includes(outcome), text);
  if (outcome === 'ok') {
    assert.equal(typeof reply.result.output, 'string');
    if (t.output !== undefined) assert.equal(reply.result.output, t.output);
  }
  if (outcome === 'LP_ERR_EVAL_THROWN' && t.message !== undefined) assert.equal(reply.error.message, t.message);
  if (!reply.ok) assert.ok(!/\n\s+at /.test(reply.error.message), `no stack on the wire: ${text}`);
  // The attempt is on the record.
  let records = readAudit(a!.auditFile).filter((r) => r.op === 'eval' && r.detail === code);
  for (let i = 0; i < 20 && records.length === 0; i++) {
    await new Promise((res) => setTimeout(res, 100));
    records = readAudit(a!.auditFile).filter((r) => r.op === 'eval' && r.detail === code);
  }
  assert.equal(records.length >= 1, true, 'the attempt is audited');
  assert.equal(records.at(-1).outcome, outcome);
}

describe('read-only evaluation runs no caller code outside the side-effect check', () => {
  for (const t of attempts) it(`read: ${t.name}`, () => attempt('read', t));
  for (const t of attempts.filter((x) =>
    /toStringTag getter on|message and name|inspect.custom, toJSON.*returned|app Proxy thrown|message\/name getters, returned/.test(x.name),
  )) {
    it(`patch: ${t.name}`, () => attempt('patch', t));
  }

  it('admin evaluation is unchanged: full eval, rendered with util.inspect', async () => {
    await ensureHost();
    const reply = await rawRequest(clients!.admin, ++seq, 'eval', {
      code: "class I {\n  [Symbol.for('nodejs.util.inspect.custom')](): string { return 'custom'; }\n}\n[new I(), new Map([[1, 'a']])]",
    });
    assert.equal(reply.ok, true, JSON.stringify(reply));
    assert.equal(reply.result.output, "[ custom, Map(1) { 1 => 'a' } ]");
  });
});
