/**
 * `livepatch attach` end to end: the built CLI in a real terminal (tmux) against the agent inside a
 * real app process. A patch-role operator selects a module, reads its source, edits it through a
 * scripted $EDITOR, checks (a type error, jumped to), fixes, checks again, applies with a message
 * and sees the new version and the event; the app then serves the patched code. Then rolls back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, createProject, createTokens, startApp } from './helpers/project';
import { readAudit } from './helpers/raw-client';
import { Terminal } from './helpers/terminal';

/** An $EDITOR that applies the replacement named in the plan file to the file it is given. */
const EDITOR_JS = `
const fs = require('fs');
const plan = JSON.parse(fs.readFileSync(process.env.LP_EDIT_PLAN, 'utf8'));
const file = process.argv[2];
const text = fs.readFileSync(file, 'utf8');
if (!text.includes(plan.find)) process.exit(3);
fs.writeFileSync(file, text.replace(plan.find, plan.replace));
`;

test(
  'attach: navigate, edit in $EDITOR, check, jump to a diagnostic, apply, see the new version and the event',
  { timeout: 180_000 },
  async (t) => {
    const project = createProject();
    t.after(() => project.cleanup());
    const tokens = createTokens(project.root);
    const audit = join(project.root, 'audit.log');
    const app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_AUDIT: audit } });
    t.after(() => app.stop());
    const editor = join(project.root, 'editor.js');
    const plan = join(project.root, 'plan.json');
    writeFileSync(editor, EDITOR_JS);
    const edit = (find: string, replace: string) => writeFileSync(plan, JSON.stringify({ find, replace }));

    const term = Terminal.start([process.execPath, CLI, 'attach', app.agent!], {
      env: { LIVEPATCH_TOKEN: tokens.patch, EDITOR: `${process.execPath} ${editor}`, LP_EDIT_PLAN: plan },
    });
    t.after(() => term.close());

    let screen = await term.waitFor('● connected');
    assert.match(screen, /patcher \(patch\)/);
    assert.match(screen, /gen 1/);
    await term.waitFor('src/server.ts v1');

    // Modules are listed in order (main, quote, rates, server): two down selects rates.
    term.press('Down', 'Down', 'Enter');
    screen = await term.waitFor("return 'A1'");
    assert.match(screen, /Source.*src\/rates\.ts v1/);
    assert.match(screen, /\d │ export function rate\(currency: string\): number \{/);

    // A type error: check lists it, enter jumps to its line in the source view.
    edit("return 'A1';", 'return 42;');
    term.press('e');
    screen = await term.waitFor('draft: 1 module');
    assert.match(screen, /✎ src\/rates\.ts v1/);
    assert.match(screen, /\[draft\]/);
    term.press('c');
    screen = await term.waitFor(/1 problem/, 90_000);
    assert.match(screen, /src\/rates\.ts\(\d+,\d+\): error TS2322/);
    term.press('Enter');
    screen = await term.waitFor(/\^ Type 'number' is not assignable to type 'string'/);
    assert.match(screen, />\s*\d+ │\s+return 42;/, 'the diagnostic line is marked');

    // Fix it (the editor gets the draft text), look at the diff, check again.
    edit('return 42;', "return 'A2';");
    term.press('e');
    await term.waitFor("return 'A2'");
    term.press('4');
    screen = await term.waitFor("+  return 'A2';");
    assert.match(screen, /- {2}return 'A1';/);
    term.press('c');
    await term.waitFor('Check passed', 90_000);
    term.press('Enter');

    // Quitting with a draft asks first; "n" stays.
    term.press('q');
    await term.waitFor('is not applied and will be lost');
    term.press('n');
    await term.waitFor((s) => !s.includes('will be lost'));

    // A second module joins the same draft (focus back to the modules pane, select quote.ts).
    term.press('1');
    await term.waitFor(/1 Source.*─ src\/rates\.ts v1 \[draft\]/);
    term.press('BTab', 'Up');
    await term.waitFor("return 'B1'");
    edit("return 'B1';", "return 'B2';");
    term.press('e');
    screen = await term.waitFor('draft: 2 modules');
    assert.match(screen, /✎ src\/quote\.ts v1/);
    assert.match(screen, /✎ src\/rates\.ts v1/);

    // Apply: the confirmation lists the modules and takes a message.
    term.press('a');
    screen = await term.waitFor('Apply the draft?');
    assert.match(screen, /src\/quote\.ts \(from v1\)/);
    assert.match(screen, /src\/rates\.ts \(from v1\)/);
    term.type('tags from the tui');
    await term.waitFor('tags from the tui_');
    term.press('Enter');
    screen = await term.waitFor('Patch applied', 90_000);
    assert.match(screen, /Generation 2 is live \(was 1\)/);
    term.press('Enter');
    screen = await term.waitFor(/\* src\/rates\.ts v2/);
    assert.match(screen, /\* src\/quote\.ts v2/);
    assert.match(screen, /patch → gen 2 by patcher: tags from the tui \[src\/quote\.ts, src\/rates\.ts\]/);
    assert.match(screen, /gen 2 │ live: g2\*/);
    assert.doesNotMatch(screen, /draft: \d module/);

    assert.deepEqual(await app.get('/mix'), { a: 'A2', b: 'B2' });

    // Roll back: choose the target generation, confirm.
    term.press('r');
    screen = await term.waitFor('Roll back from gen 2 to…');
    assert.match(screen, /› gen 1\s+deploy/);
    term.press('Enter');
    await term.waitFor('Roll back to generation 1?');
    term.press('y');
    screen = await term.waitFor('Rolled back', 60_000);
    assert.match(screen, /Generation 3 is live \(was 2\)/);
    term.press('Enter');
    await term.waitFor(/rollback → gen 3 by patcher/);
    await term.waitFor(/ src\/rates\.ts v1/);
    assert.deepEqual(await app.get('/mix'), { a: 'A1', b: 'B1' });

    term.press('q');
    assert.equal(await term.waitExit(), 0);

    // The first edit made a draft while the host's checker was stopped: the TUI asked the agent to
    // build the program then (warm), before the first check.
    const ops = readAudit(audit)
      .filter((e) => e.who === 'patcher' && ['warm', 'check', 'apply'].includes(e.op))
      .map((e) => `${e.op} ${e.outcome}`);
    assert.equal(ops[0], 'warm ok', ops.join(', '));
    assert.ok(ops.indexOf('check ok') > 0, ops.join(', '));
  },
);
