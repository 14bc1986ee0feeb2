/**
 * `livepatch attach` end to end across an agent restart, with an admin token: the REPL pane
 * evaluates in the live process; when the app dies the UI says "disconnected", keeps the last state
 * marked stale, and reconnects by itself when the app is back on the same port.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLI, createProject, createTokens, startApp, type AppProcess } from './helpers/project';
import { Terminal } from './helpers/terminal';
import { freePort } from '../testkit/launch';

test('attach as admin: the REPL pane evaluates; a dropped agent is shown stale and reconnected', { timeout: 180_000 }, async (t) => {
  const project = createProject();
  t.after(() => project.cleanup());
  const tokens = createTokens(project.root);
  const port = await freePort();
  const env = { LIVEPATCH_TOKENS: tokens.file, LIVEPATCH_LISTEN: `127.0.0.1:${port}` };
  let app: AppProcess = await startApp(project.root, { env });
  t.after(() => app.stop());
  const term = Terminal.start([process.execPath, CLI, 'attach', `127.0.0.1:${port}`], { env: { LIVEPATCH_TOKEN: tokens.admin } });
  t.after(() => term.close());

  let screen = await term.waitFor('src/rates.ts v1');
  assert.match(screen, /root \(admin\)/);
  assert.match(screen, /─ REPL ─/);

  // Focus ring: modules → main → events → REPL.
  term.press('Tab', 'Tab', 'Tab');
  term.type('[1, 2].map((n) => n * 21)');
  await term.waitFor('> [1, 2].map((n) => n * 21)_');
  term.press('Enter');
  await term.waitFor(/\[ 21, 42 \]/, 60_000);
  term.press('Escape');

  await app.stop();
  await term.waitFor('DISCONNECTED');
  screen = await term.waitFor(/Modules 4\/4 \(stale\)/);
  assert.match(screen, /\[stale\]/);
  assert.match(screen, /src\/rates\.ts v1/, 'the last state stays on screen');
  assert.match(screen, /disconnected: connection closed/);

  app = await startApp(project.root, { env });
  screen = await term.waitFor((s) => s.includes('● connected') && !s.includes('stale'), 30_000);
  assert.match(screen, /src\/rates\.ts v1/);
  assert.match(
    screen,
    /disconnected: [\s\S]*connected to 127\.0\.0\.1:\d+ as root \(admin\)/,
    'the log shows the drop, then the reconnect',
  );

  term.press('q');
  assert.equal(await term.waitExit(), 0);
});
