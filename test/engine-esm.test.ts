/**
 * An ES module app (`"type": "module"`) under `-r livepatch/register`: livepatch does not make ES
 * modules live yet, and says so. It reports the app at start (stderr and `status`), and a patch naming
 * one of its modules is refused by `check` and `apply` alike with LP_ERR_PATCH_NOT_LIVE — never
 * committed as a "new module" that nothing would reach.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createProject, createTokens, runCli, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';

let project: Project;
let tokens: Tokens;
let app: AppProcess;

before(async () => {
  project = createProject('esm');
  tokens = createTokens(project.root);
  app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file } });
});
after(async () => {
  await app?.stop();
  project?.cleanup();
});

const cli = (args: string[], token: string) => runCli(args, { cwd: project.root, env: { LIVEPATCH_TOKEN: token } });

test('the app runs unchanged and is reported as not live at start and in status', async () => {
  assert.equal(await (await fetch(`http://127.0.0.1:${app.httpPort}/`)).text(), 'hello esm');
  assert.match(app.stderr(), /livepatch: src\/main\.ts is not live: an ES module/);
  const s = await cli(['status', app.agent!, '--json'], tokens.read);
  assert.equal(s.code, 0, s.stderr);
  const status = JSON.parse(s.stdout) as { notLive?: { module: string; reason: string }[] };
  assert.deepEqual(status.notLive?.map((n) => n.module), ['src/main.ts']);
  const human = await cli(['status', app.agent!], tokens.read);
  assert.match(human.stdout, /not live\s+1 file\(s\) loaded but not live/);
});

test('a patch of one of its modules is refused by check and apply with LP_ERR_PATCH_NOT_LIVE; nothing changes', async () => {
  project.write('patch/src/greet.ts', 'export function greet(who: string): string {\n  return `hi ${who}`;\n}\n');
  const check = await cli(['check', app.agent!, 'patch/src/greet.ts', '--root', 'patch', '--json'], tokens.patch);
  assert.equal(check.code, 1, check.stdout + check.stderr);
  assert.match(check.stdout + check.stderr, /src\/greet\.ts.*LP_ERR_PATCH_NOT_LIVE.*ES module/);
  for (const dry of [true, false]) {
    const r = await cli(['apply', app.agent!, 'patch/src/greet.ts', '--root', 'patch', '--json', ...(dry ? ['--dry-run'] : [])], tokens.patch);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout).error.code, 'LP_ERR_PATCH_NOT_LIVE');
  }
  assert.equal(await (await fetch(`http://127.0.0.1:${app.httpPort}/`)).text(), 'hello esm', 'still the deployed code');
  const v = await cli(['versions', app.agent!, '--json'], tokens.read);
  assert.deepEqual(JSON.parse(v.stdout), [], 'no module was created');
});
