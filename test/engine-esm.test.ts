/**
 * An ES module app (`"type": "module"`, tsc `module: NodeNext`) under `-r livepatch/register`, driven
 * through the real agent and CLI: its modules are live, a patch is type-checked against the ES module
 * program, transpiled to ES module syntax, committed and reaches the app, and is replayed from the
 * journal after a restart. A file livepatch does not make live (here: one over
 * LIVEPATCH_MAX_MODULE_BYTES) is reported at start, once per kind with a count, listed by `status`,
 * and a patch naming it is refused by `check` and `apply` with LP_ERR_PATCH_NOT_LIVE.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';

let project: Project;
let tokens: Tokens;
let journal: string;

before(() => {
  project = createProject('esm');
  tokens = createTokens(project.root);
  journal = join(project.root, '.journal');
});
after(() => project?.cleanup());

const cli = (args: string[], token: string) => runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: token } });
const answer = async (app: AppProcess): Promise<string> => (await fetch(`http://127.0.0.1:${app.httpPort}/`)).text();

test('the ES modules are live; a patch is checked, applied and replayed after a restart', async () => {
  let app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_JOURNAL: journal } });
  try {
    assert.equal(await answer(app), 'hello esm');
    assert.doesNotMatch(app.stderr(), /not live/);
    const v = await cli(['versions', app.agent!, '--json'], tokens.read);
    assert.equal(v.code, 0, v.stderr);
    assert.deepEqual(
      JSON.parse(v.stdout).map((m: { module: string }) => m.module),
      ['src/greet.ts', 'src/main.ts'],
    );

    project.write('patch/src/greet.ts', 'export function greet(who: string): string {\n  return `hi ${who}`;\n}\n');
    const bad = 'export function greet(who: number): string {\n  return `hi ${who}`;\n}\n';
    project.write('bad/src/greet.ts', bad);
    const typeError = await cli(['check', app.agent!, 'bad/src/greet.ts', '--root', 'bad'], tokens.patch);
    assert.equal(typeError.code, 1, typeError.stdout + typeError.stderr);
    assert.match(
      typeError.stdout + typeError.stderr,
      /src\/main\.ts\(\d+,\d+\): error TS2345/,
      'the importer is checked against the new signature',
    );

    const r = await cli(['apply', app.agent!, 'patch/src/greet.ts', '--root', 'patch', '-m', 'greet shorter', '--json'], tokens.patch);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(
      JSON.parse(r.stdout).hosts[0].result.changed.map((c: { module: string; version: number }) => [c.module, c.version]),
      [['src/greet.ts', 2]],
    );
    assert.equal(await answer(app), 'hi esm');
  } finally {
    await app.stop();
  }
  app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_JOURNAL: journal } });
  try {
    assert.equal(await answer(app), 'hi esm', 'the journaled patch was replayed before serving');
    const rb = await cli(['rollback', app.agent!, '--json'], tokens.patch);
    assert.equal(rb.code, 0, rb.stdout + rb.stderr);
    assert.equal(await answer(app), 'hello esm');
  } finally {
    await app.stop();
  }
});

test('a file that is not live is reported at start and in status, and a patch naming it is refused', async () => {
  // main.js is the larger of the two compiled modules: a limit just under its size leaves it out.
  const limit = statSync(join(project.root, 'dist', 'main.js')).size - 1;
  assert.ok(statSync(join(project.root, 'dist', 'greet.js')).size <= limit);
  const app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_MAX_MODULE_BYTES: String(limit) } });
  try {
    assert.equal(await answer(app), 'hello esm', 'the app runs unchanged');
    // Waited for, not read at once: it comes on another channel (the app's stderr pipe) than the
    // answer, which this process may read first.
    await app.proc.waitFor(
      'stderr',
      new RegExp(`livepatch: 1 file not live \\(larger than LIVEPATCH_MAX_MODULE_BYTES, ${limit} bytes\\): src/main\\.ts\\n`),
      { timeoutMs: 5000 },
    );
    const s = await cli(['status', app.agent!, '--json'], tokens.read);
    assert.equal(s.code, 0, s.stderr);
    const status = JSON.parse(s.stdout) as { notLive?: { module: string; reason: string }[] };
    assert.deepEqual(
      status.notLive?.map((n) => n.module),
      ['src/main.ts'],
    );
    assert.match(status.notLive![0]!.reason, /more than LIVEPATCH_MAX_MODULE_BYTES/);

    project.write(
      'main-patch/src/main.ts',
      readFileSync(join(project.root, 'src/main.ts'), 'utf8').replace("greet('esm')", "greet('there')"),
    );
    const check = await cli(['check', app.agent!, 'main-patch/src/main.ts', '--root', 'main-patch'], tokens.patch);
    assert.equal(check.code, 1, check.stdout + check.stderr);
    assert.match(
      check.stdout + check.stderr,
      /src\/main\.ts: error LP_ERR_PATCH_NOT_LIVE: src\/main\.ts is loaded by the app but is not a live module/,
    );
    for (const dry of [true, false]) {
      const r = await cli(
        ['apply', app.agent!, 'main-patch/src/main.ts', '--root', 'main-patch', '--json', ...(dry ? ['--dry-run'] : [])],
        tokens.patch,
      );
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_PATCH_NOT_LIVE');
    }
    assert.equal(await answer(app), 'hello esm', 'still the deployed code');
    const v = await cli(['versions', app.agent!, '--json'], tokens.read);
    assert.deepEqual(
      JSON.parse(v.stdout).map((m: { module: string }) => m.module),
      ['src/greet.ts'],
      'no module was created',
    );
  } finally {
    await app.stop();
  }
});
