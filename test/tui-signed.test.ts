/**
 * `livepatch attach` against an agent that takes signed patch sets only (LIVEPATCH_TRUSTED_KEYS), in
 * a real terminal (tmux): the apply key explains that drafts are signed in CI and writes the draft as
 * a patch file instead of sending it; that file, signed with the built CLI, applies; a second write to
 * the same name is refused rather than overwriting it. Nothing unsigned reaches the agent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, createProject, createTokens, runCli, startApp } from './helpers/project';
import { readAudit } from './helpers/raw-client';
import { Terminal } from './helpers/terminal';

const EDITOR_JS = `
const fs = require('fs');
const file = process.argv[2];
const text = fs.readFileSync(file, 'utf8');
if (!text.includes("return 'A1';")) process.exit(3);
fs.writeFileSync(file, text.replace("return 'A1';", "return 'A2';"));
`;

test(
  'attach: with signatures required, the apply key writes the draft for signing; signed, it applies',
  { timeout: 180_000 },
  async (t) => {
    const project = createProject();
    t.after(() => project.cleanup());
    const tokens = createTokens(project.root);
    const keygen = await runCli(['keygen', '--out', 'keys', '--name', 'ci'], { cwd: project.root });
    assert.equal(keygen.code, 0, keygen.stderr);
    writeFileSync(join(project.root, 'trusted-keys'), keygen.stdout);
    const auditFile = join(project.root, 'audit.jsonl');
    const app = await startApp(project.root, {
      env: { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_TRUSTED_KEYS: join(project.root, 'trusted-keys'), LIVEPATCH_AUDIT: auditFile },
    });
    t.after(() => app.stop());
    writeFileSync(join(project.root, 'editor.js'), EDITOR_JS);

    const term = Terminal.start([process.execPath, CLI, 'attach', app.agent!], {
      cwd: project.root,
      env: { LIVEPATCH_TOKEN: tokens.patch, EDITOR: `${process.execPath} ${join(project.root, 'editor.js')}` },
    });
    t.after(() => term.close());
    await term.waitFor('● connected');
    await term.waitFor('src/server.ts v1');
    term.press('Down', 'Down', 'Enter');
    await term.waitFor("return 'A1'");
    term.press('e');
    await term.waitFor('draft: 1 module');

    term.press('a');
    let screen = await term.waitFor('Signed patch sets only');
    assert.match(screen, /drafts must be signed in CI/);
    assert.match(screen, /livepatch-draft\.json_/);
    assert.doesNotMatch(screen, /Apply the draft\?/);
    term.press('Enter');
    screen = await term.waitFor('Draft written for signing');
    assert.match(screen, /livepatch sign livepatch-draft\.json --key/);
    term.press('Enter');

    const draftFile = join(project.root, 'livepatch-draft.json');
    const draft = JSON.parse(readFileSync(draftFile, 'utf8'));
    assert.deepEqual(Object.keys(draft.files), ['src/rates.ts']);
    assert.match(draft.files['src/rates.ts'], /return 'A2';/);
    assert.match(draft.base['src/rates.ts'], /^[0-9a-f]{64}$/);
    assert.equal(draft.signature, undefined);
    // Nothing was sent to the agent.
    assert.equal(readAudit(auditFile).filter((r) => r.op === 'apply' || r.op === 'stage').length, 0);
    assert.deepEqual(await app.get('/mix'), { a: 'A1', b: 'B1' });

    // Writing again does not overwrite the file.
    term.press('a');
    await term.waitFor('Signed patch sets only');
    term.press('Enter');
    screen = await term.waitFor('Draft not written');
    assert.match(screen, /already exists/);
    term.press('Enter');

    // Signed (as CI would) and applied with the CLI: the TUI sees the new version.
    const signed = await runCli(
      ['sign', 'livepatch-draft.json', '--key', 'keys/livepatch-signing.key', '-m', 'from the tui', '--out', 'signed.json'],
      { cwd: project.root },
    );
    assert.equal(signed.code, 0, signed.stderr);
    const applied = await runCli(['apply', app.agent!, 'signed.json'], { cwd: project.root, env: { LIVEPATCH_TOKEN: tokens.patch } });
    assert.equal(applied.code, 0, applied.stderr);
    assert.deepEqual(await app.get('/mix'), { a: 'A2', b: 'B1' });
    await term.waitFor(/patch → gen 2 by patcher: from the tui/);
    assert.ok(existsSync(draftFile));

    term.press('x');
    await term.waitFor('Discard the draft?');
    term.press('y');
    term.press('q');
    assert.equal(await term.waitExit(), 0);
  },
);
