/**
 * `livepatch eval` and `livepatch repl` as a user runs them: the built CLI binary against a real app
 * with the agent, exit codes by outcome, piped multi-line input for the line-mode REPL.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';

let project: Project;
let tokens: Tokens;
let app: AppProcess;

before(async () => {
  project = createProject();
  tokens = createTokens(project.root);
  app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file } });
});

after(async () => {
  await app?.stop();
  project?.cleanup();
});

const as = (token: string) => ({ env: { LIVEPATCH_TOKEN: token } });

describe('livepatch eval', () => {
  it('prints the value of a typed expression over a live module (exit 0)', async () => {
    const r = await runCli(['eval', app.agent!, "mod('src/rates.ts').rate('EUR')"], as(tokens.admin));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '1.1\n');
  });

  it('prints captured console output before the value', async () => {
    const r = await runCli(['eval', app.agent!, "console.log('from-eval'); [1, 2].map((n) => n * 2)"], as(tokens.admin));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'from-eval\n[ 2, 4 ]\n');
  });

  it('gives the result as JSON with --json', async () => {
    const r = await runCli(['eval', app.agent!, "mod('src/quote.ts').tag()", '--json'], as(tokens.read));
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout) as { output: string; console: unknown[]; truncated: boolean };
    assert.equal(res.output, "'B1'");
    assert.deepEqual(res.console, []);
    assert.equal(res.truncated, false);
  });

  it('reports a type error in tsc form and exits 1', async () => {
    const r = await runCli(['eval', app.agent!, "mod('src/rates.ts').rate(1)"], as(tokens.admin));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /<repl>\(1,26\): error TS2345: Argument of type 'number'/);
    assert.equal(r.stdout, '');
  });

  it('refuses a side effect for a read token (exit 3), and exits 4 when nothing listens', async () => {
    const r = await runCli(['eval', app.agent!, "process.env.X = 'y'"], as(tokens.read));
    assert.equal(r.code, 3);
    assert.match(r.stderr, /side effects/);
    const none = await runCli(['eval', '127.0.0.1:1', '1'], as(tokens.admin));
    assert.equal(none.code, 4);
    const bad = await runCli(['eval', app.agent!, '1'], as('lp_nope_' + 'a'.repeat(43)));
    assert.equal(bad.code, 3);
  });
});

describe('livepatch repl', () => {
  it('evaluates piped lines, continues incomplete input and keeps declarations', async () => {
    const input = [
      'const base: number = 40',
      'function add(n: number) {',
      '  return base + n',
      '}',
      'add(2)',
      "import * as rates from './src/rates'",
      "console.log('eur', rates.rate('EUR'))",
      'const s: string = base',
      "throw new RangeError('nope')",
      '.exit',
      'add(1000)',
    ].join('\n');
    const r = await runCli(['repl', app.agent!], { ...as(tokens.admin), input });
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout;
    assert.match(out, /\.\.\. /, 'continuation prompt shown');
    assert.match(out, /lp> 42\n/);
    assert.match(out, /eur 1\.1\n/);
    assert.match(out, /<repl>\(1,7\): error TS2322/);
    assert.match(out, /Uncaught RangeError: nope/);
    assert.ok(!out.includes('1040'), 'input after .exit is not evaluated');
  });

  it('prompts before every piped input although the pipe ends before the evaluations do (exit 0 at end of input)', async () => {
    // All of this arrives and ends at once, so readline has closed before the first evaluation returns.
    const input = ['const a: number = 20', 'function twice() {', '  return a * 2', '}', 'twice() + 2', ''].join('\n');
    const r = await runCli(['repl', app.agent!], { ...as(tokens.admin), input });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, 'lp> undefined\nlp> ... ... undefined\nlp> 42\nlp> ');
  });
});
