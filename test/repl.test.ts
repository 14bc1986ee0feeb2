/**
 * The networked REPL through the real agent: a real app child process started with
 * `-r livepatch/register`, real WebSocket connections with admin and read tokens.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sha256 as hash } from '../shared/hash';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { RemoteRepl } from '../client/repl/session';
import { LivepatchError, type Diagnostic } from '../shared';
import { createProject, createTokens, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';

let project: Project;
let tokens: Tokens;
let app: AppProcess;
const clients: AgentClient[] = [];

async function connect(token: string): Promise<AgentClient> {
  const c = await AgentClient.connect(app.agent!, { token, timeoutMs: 30_000 });
  clients.push(c);
  return c;
}

async function session(token: string): Promise<RemoteRepl> {
  const r = new RemoteRepl(await connect(token));
  await r.open();
  return r;
}

/** The LivepatchError a promise rejects with (fails the test if it resolves). */
async function failure(p: Promise<unknown>): Promise<LivepatchError> {
  try {
    const v = await p;
    assert.fail(`expected a failure, got ${JSON.stringify(v)}`);
  } catch (e) {
    assert.ok(e instanceof LivepatchError, `not a LivepatchError: ${String(e)}`);
    return e;
  }
}

before(async () => {
  project = createProject();
  tokens = createTokens(project.root);
  app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file } });
});

after(async () => {
  for (const c of clients) c.close();
  await app?.stop();
  project?.cleanup();
});

describe('REPL through the agent', () => {
  it('evaluates typed TypeScript against a live module', async () => {
    const r = await session(tokens.admin);
    const a = await r.eval("mod('src/rates.ts').rate('EUR')");
    assert.equal(a.output, '1.1');
    const b = await r.eval("import * as rates from './src/rates';\nrates.rate('EUR') + 1");
    assert.equal(b.output, '2.1');
    const c = await r.eval("import { quote } from './src/quote';\nquote('EUR', 10)");
    assert.equal(c.output, '11');
  });

  it('reports a type error with its TS code and runs nothing', async () => {
    const r = await session(tokens.admin);
    const e = await failure(r.eval("process.env.LP_REPL_MARK = 'ran';\nconst n: number = mod('src/rates.ts').rate(42);"));
    assert.equal(e.code, 'LP_ERR_EVAL_TYPE');
    const diags = (e.details as { diagnostics: Diagnostic[] }).diagnostics;
    assert.ok(
      diags.some((d) => d.code === 2345 && d.line === 2),
      JSON.stringify(diags),
    );
    assert.equal((await r.eval('String(process.env.LP_REPL_MARK)')).output, "'undefined'");
    const unknownModule = await failure(r.eval("mod('src/nope.ts')"));
    assert.equal(unknownModule.code, 'LP_ERR_EVAL_TYPE');
  });

  it('keeps declarations and state across inputs, with top-level await', async () => {
    const r = await session(tokens.admin);
    await r.eval('const base: number = 40;');
    await r.eval('function add(n: number): number {\n  return base + n;\n}');
    assert.equal((await r.eval('add(2)')).output, '42');
    await r.eval('const later = await new Promise<number>((res) => setTimeout(() => res(5), 20));');
    assert.equal((await r.eval('later * 2')).output, '10');
    // The declared types persist too: `later` is a number.
    const e = await failure(r.eval('const s: string = later;'));
    assert.equal(e.code, 'LP_ERR_EVAL_TYPE');
    assert.equal((await r.eval('({ base, sum: add(later) })')).output, '{ base: 40, sum: 45 }');
  });

  it('gives each connection its own session', async () => {
    const a = await session(tokens.admin);
    const b = await session(tokens.admin);
    await a.eval('const mine = 1;');
    const e = await failure(b.eval('mine'));
    assert.equal(e.code, 'LP_ERR_EVAL_TYPE');
    assert.ok((e.details as { diagnostics: Diagnostic[] }).diagnostics.some((d) => d.code === 2304));
    const stolen = await failure(b.client.request('eval', { code: '1', session: a.session! }));
    assert.equal(stolen.code, 'LP_ERR_EVAL_SESSION');
  });

  it('interrupts a busy loop after the timeout while HTTP requests still complete', async () => {
    const r = await session(tokens.admin);
    // The loop announces itself through a file, so the requests below are sent while it spins.
    const marker = join(project.root, 'loop-started');
    const started = Date.now();
    const looping = failure(r.eval(`require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'x');\nwhile (true) {}`, 1500));
    while (!existsSync(marker)) await new Promise((res) => setTimeout(res, 20));
    const health = await Promise.all([app.get('/health'), app.get('/health'), app.get('/quote?c=EUR&a=2')]);
    const e = await looping;
    assert.equal(e.code, 'LP_ERR_EVAL_TIMEOUT');
    assert.deepEqual(health, [{ ok: true }, { ok: true }, { total: 2.2 }]);
    assert.ok(Date.now() - started < 20_000);
    const pending = await failure(r.eval('await new Promise(() => {})', 300));
    assert.equal(pending.code, 'LP_ERR_EVAL_TIMEOUT');
    assert.equal((await r.eval('1 + 1')).output, '2');
  });

  it('captures console output instead of writing to the app stdout', async () => {
    const r = await session(tokens.admin);
    const res = await r.eval("console.log('repl-hello', { a: 1 });\nconsole.error('repl-bad');\n3");
    assert.equal(res.output, '3');
    assert.deepEqual(res.console, [
      { level: 'log', text: 'repl-hello { a: 1 }' },
      { level: 'error', text: 'repl-bad' },
    ]);
    assert.ok(!app.stdout().includes('repl-hello'));
    assert.ok(!app.stderr().includes('repl-bad'));
  });

  it('reports a thrown value by its message only, and bounds large results', async () => {
    const r = await session(tokens.admin);
    const e = await failure(r.eval("throw new TypeError('boom')"));
    assert.equal(e.code, 'LP_ERR_EVAL_THROWN');
    assert.equal(e.message, 'TypeError: boom');
    assert.ok(!JSON.stringify(e.toWire()).includes(' at '));
    const big = await r.eval("'x'.repeat(200000)");
    assert.equal(big.truncated, true);
    assert.ok(big.output.length <= 64 * 1024 + 8);
  });

  it('lets a read token evaluate pure expressions and refuses side effects', async () => {
    const r = await session(tokens.read);
    assert.equal((await r.eval("mod('src/rates.ts').rate('EUR')")).output, '1.1');
    assert.equal(
      (await r.eval("import * as rates from './src/rates';\n[rates.RATES_LABEL, rates.rate('USD')]")).output,
      "[ 'rates-v1', 1 ]",
    );
    for (const code of [
      'process.exit(1)',
      "process.env.LP_READ = 'x'",
      "console.log('leak')",
      "import * as fs from 'node:fs';\nfs.readdirSync('/')",
    ]) {
      const e = await failure(r.eval(code));
      assert.equal(e.code, 'LP_ERR_EVAL_SIDE_EFFECT', code);
    }
    assert.deepEqual(await app.get('/health'), { ok: true });
    const patcher = await session(tokens.patch);
    assert.equal((await patcher.eval("mod('src/quote.ts').quote('EUR', 100)")).output, '110');
    const loop = await failure(patcher.eval('while (true) {}', 300));
    assert.equal(loop.code, 'LP_ERR_EVAL_TIMEOUT');
  });

  it('pins a session to a live generation and refuses a dead one', async () => {
    const c = await connect(tokens.admin);
    const pinned = new RemoteRepl(c);
    await pinned.open(1);
    assert.equal((await pinned.eval("mod('src/rates.ts').tag()")).output, "'A1'");
    await pinned.close();
    const e = await failure(c.request('repl-open', { generation: 99 }));
    assert.equal(e.code, 'LP_ERR_EVAL_SESSION');
  });

  it('types and runs patched modules at their current version', async () => {
    const r = await session(tokens.admin);
    const reader = await session(tokens.read);
    const rates = readFileSync(join(project.root, 'src', 'rates.ts'), 'utf8');
    const patched = rates.replace("return 'A1';", "return 'A2';") + '\nexport function fee(): number {\n  return 3;\n}\n';
    const patcher = await connect(tokens.patch);
    const before = (await patcher.request('status', {})).currentGeneration;
    const pinned = new RemoteRepl(await connect(tokens.admin));
    await pinned.open(before);
    const applied = await patcher.request('apply', { patch: { files: { 'src/rates.ts': patched }, message: 'repl test' } });
    assert.ok(applied.generation > before);
    assert.equal((await r.eval("mod('src/rates.ts').fee() + 1")).output, '4');
    assert.equal((await r.eval("import { tag } from './src/rates';\ntag()")).output, "'A2'");
    // The pinned session still sees (and types against) the generation it was opened on.
    assert.equal((await pinned.eval("mod('src/rates.ts').tag()")).output, "'A1'");
    assert.equal((await failure(pinned.eval("mod('src/rates.ts').fee()"))).code, 'LP_ERR_EVAL_TYPE');
    assert.ok((await patcher.request('status', {})).liveGenerations.some((g) => g.generation === before));
    await pinned.close();
    assert.ok(
      !(await patcher.request('status', {})).liveGenerations.some((g) => g.generation === before),
      'closing the session lets the old generation go',
    );
    assert.equal((await reader.eval("mod('src/rates.ts').tag()")).output, "'A2'");
    const e = await failure(r.eval("const f: string = mod('src/rates.ts').fee();"));
    assert.equal(e.code, 'LP_ERR_EVAL_TYPE');
  });

  it('audits every evaluation with its outcome', async () => {
    const code = "mod('src/rates.ts').rate('GBP') // audited";
    const r = await session(tokens.read);
    await r.eval(code);
    await failure(r.eval('process.exit(2) // audited'));
    const file = join(project.root, '.livepatch', 'audit.jsonl');
    const read = () =>
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { op: string; who: string; outcome: string; hashes?: { code?: string } })
        .filter((x) => x.op === 'eval') as {
        op: string;
        who: string;
        outcome: string;
        session?: string;
        detail?: string;
        hashes?: { code?: string };
      }[];
    // The agent appends the record as the reply goes out: give the last one a moment to land.
    let evals = read();
    for (let i = 0; i < 20 && !evals.some((x) => x.hashes?.code === hash('process.exit(2) // audited')); i++) {
      await new Promise((res) => setTimeout(res, 100));
      evals = read();
    }
    assert.ok(
      evals.some((x) => x.who === 'reader' && x.outcome === 'ok' && x.hashes?.code === hash(code)),
      JSON.stringify(evals.slice(-3)),
    );
    assert.ok(
      evals.some((x) => x.outcome === 'LP_ERR_EVAL_SIDE_EFFECT' && x.hashes?.code === hash('process.exit(2) // audited')),
      JSON.stringify(evals.slice(-3)),
    );
    // The record names the expression itself and the session it ran in.
    const ok = evals.find((x) => x.hashes?.code === hash(code))!;
    assert.equal(ok.detail, code);
    assert.match(ok.session ?? '', /\S/);
  });
});
