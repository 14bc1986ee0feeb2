/**
 * `livepatch attach` with a read-only token, end to end in a real terminal: patch actions are not
 * offered and their keys say why; nothing is changed; a patch applied by someone else appears in
 * the event log, the modules list and the history as it happens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { CLI, createProject, createTokens, startApp } from './helpers/project';
import { Terminal } from './helpers/terminal';

test(
  'attach with a read token: patch keys are refused with the reason; patches by others show up live',
  { timeout: 180_000 },
  async (t) => {
    const project = createProject();
    t.after(() => project.cleanup());
    const tokens = createTokens(project.root);
    const app = await startApp(project.root, { env: { LIVEPATCH_TOKENS: tokens.file } });
    t.after(() => app.stop());
    const term = Terminal.start([process.execPath, CLI, 'attach', app.agent!], { env: { LIVEPATCH_TOKEN: tokens.read, EDITOR: 'false' } });
    t.after(() => term.close());

    let screen = await term.waitFor('src/rates.ts v1');
    assert.match(screen, /reader \(read\)/);
    assert.match(screen, /read-only token: patching not offered/);
    assert.doesNotMatch(screen, /e edit|a apply/, 'patch actions are not offered in the hint line');

    for (const [key, what] of [
      ['e', 'Edit the selected module'],
      ['a', 'Apply the draft'],
      ['r', 'Roll back'],
      ['c', 'Type-check the draft'],
      ['x', 'Discard the draft'],
    ]) {
      term.press(key!);
      screen = await term.waitFor(`needs role patch; this token's role is read`);
      assert.ok(screen.includes(what!), `the notice for ${key} names the action:\n${screen}`);
      term.press('Down'); // any handled key clears the notice
      await term.waitFor((s) => !s.includes('needs role patch'));
    }
    assert.doesNotMatch(term.screen(), /draft: \d|Apply the draft\?|Roll back from/);

    // Filter down to one module, then its exports.
    term.press('/');
    term.type('rat');
    screen = await term.waitFor('Modules 1/4 /rat_');
    assert.doesNotMatch(screen, /src\/quote\.ts/);
    term.press('Enter', '2');
    screen = await term.waitFor(/function\s+rate\b/);
    assert.match(screen, /value\s+RATES_LABEL/);
    assert.match(screen, /2 Exports.*─ src\/rates\.ts v1/);
    term.press('1', '/', 'Escape');
    await term.waitFor('Modules 4/4');

    term.press('?');
    await term.waitFor('Keys (escape closes)');
    screen = await term.waitFor('Discard the draft');
    assert.match(screen, /e\s+Edit the selected module in \$EDITOR.*\(needs role patch\)/);
    assert.match(screen, /\?\s+Show every key/);
    term.press('Escape');
    await term.waitFor((s) => !s.includes('Keys (escape closes)'));

    // Someone else patches: the event, the new version and the history appear without a key press.
    const other = await AgentClient.connect(app.agent!, { token: tokens.patch });
    t.after(() => other.close());
    const rates = readFileSync(join(project.root, 'src/rates.ts'), 'utf8').replace("'A1'", "'A3'");
    const r = await other.request('apply', { patch: { files: { 'src/rates.ts': rates }, message: 'patched elsewhere' } });
    assert.equal(r.generation, 2);
    await term.waitFor(/patch → gen 2 by patcher: patched elsewhere \[src\/rates\.ts\]/);
    screen = await term.waitFor(/\* src\/rates\.ts v2/);
    assert.match(screen, /gen 2 │ live: g2\*/);
    term.press('3');
    // The History tab shows the table of `livepatch history`.
    screen = await term.waitFor(/GEN +KIND +TIME +WHO/);
    assert.match(screen, /│2 +patch +\S+ \S+ +patcher +current +src\/rates\.ts +patched elsewhere/);
    assert.match(screen, /│1 +deploy /);

    term.press('C-c');
    assert.equal(await term.waitExit(), 0);
  },
);
