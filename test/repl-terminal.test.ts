/**
 * `livepatch repl` in a real terminal (tmux): prompt, multi-line continuation, history recall with
 * the Up key, Ctrl+C dropping a half-typed input, `.exit` with status 0.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CLI, createProject, createTokens, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';
import { Terminal } from './helpers/terminal';

let project: Project;
let tokens: Tokens;
let app: AppProcess;
let term: Terminal | undefined;

before(async () => {
  project = createProject();
  tokens = createTokens(project.root);
  app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file } });
});

after(async () => {
  term?.close();
  await app?.stop();
  project?.cleanup();
});

/** Lines of the screen that are not blank. */
const lines = (screen: string) => screen.split('\n').filter((l) => l.trim());

describe('livepatch repl in a terminal', () => {
  it('continues incomplete input, recalls history and exits cleanly', async () => {
    term = Terminal.start([process.execPath, CLI, 'repl', app.agent!], { env: { LIVEPATCH_TOKEN: tokens.admin } });
    await term.waitFor(/connected to .* as root \(admin\)[\s\S]*^lp>/m, 30_000);
    term.type('const n: number = 20');
    term.press('Enter');
    await term.waitFor(/undefined\nlp>/m, 60_000);
    term.type('function twice(x: number) {');
    term.press('Enter');
    await term.waitFor(/^\.\.\.\s*$/m);
    term.type('return x * 2');
    term.press('Enter');
    // The next continuation prompt first: a key typed ahead of it is echoed before the prompt is drawn.
    await term.waitFor(/^\.\.\. return x \* 2\n\.\.\.\s*$/m);
    term.type('}');
    term.press('Enter');
    await term.waitFor((s) => lines(s).filter((l) => l === 'undefined').length === 2);
    term.type('twice(n) + 2');
    term.press('Enter');
    await term.waitFor(/^42$/m);
    // Up recalls the last line; Enter evaluates it again in the same session.
    term.press('Up');
    await term.waitFor(/lp> twice\(n\) \+ 2$/m);
    term.press('Enter');
    await term.waitFor((s) => lines(s).filter((l) => l === '42').length === 2);
    // Ctrl+C drops a half-typed input instead of leaving.
    term.type('twice(');
    term.press('C-c');
    term.type('n');
    term.press('Enter');
    await term.waitFor(/^20$/m);
    term.type('.exit');
    term.press('Enter');
    assert.equal(await term.waitExit(15_000), 0);
  });
});
