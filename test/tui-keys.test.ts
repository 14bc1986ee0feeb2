/**
 * The TUI keymap is defined once (client/tui/keys.ts): the README table is generated from it, key
 * names are unambiguous, blessed's key events map to them, and the controller routes them (role
 * checks, popups) into the reducer. Also the source colouring.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KEYMAP, keyName, keymapMarkdown, type KeyBinding } from '../client/tui/keys';
import { Controller } from '../client/tui/controller';
import type { Effects } from '../client/tui/effects';
import { Store } from '../client/tui/app';
import { initialState } from '../client/tui/state';
import { highlight } from '../client/tui/highlight';
import { REPO } from './helpers/project';

test('the README keys table is the one generated from keys.ts', () => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const m = /<!-- tui-keys:start -->\n([\s\S]*?)\n<!-- tui-keys:end -->/.exec(readme);
  assert.ok(m, 'README has the tui-keys markers');
  assert.equal(m[1], keymapMarkdown());
});

test('no key is bound twice in a scope, and every binding has help', () => {
  for (const scope of ['global', 'popup'] as const) {
    const keys = (KEYMAP as readonly KeyBinding[]).filter((b) => b.scope === scope).flatMap((b) => b.keys);
    assert.deepEqual(keys, [...new Set(keys)], `duplicate key in ${scope}`);
  }
  for (const b of KEYMAP as readonly KeyBinding[]) assert.ok(b.help.length > 5, b.id);
});

test('blessed key events map to keymap names', () => {
  assert.equal(keyName('R', { full: 'S-r', name: 'r' }), 'R');
  assert.equal(keyName('?', { full: '?' }), '?');
  assert.equal(keyName('\r', { full: 'enter', name: 'enter' }), 'enter');
  assert.equal(keyName('\r', { full: 'return', name: 'return' }), undefined, 'enter arrives twice; one is dropped');
  assert.equal(keyName(undefined, { full: 'S-tab', name: 'tab' }), 'S-tab');
  assert.equal(keyName(' ', { full: 'space', name: 'space' }), 'space');
  assert.equal(keyName('\x03', { full: 'C-c', name: 'c' }), 'C-c');
  assert.equal(keyName(undefined, { full: 'pagedown', name: 'pagedown' }), 'pagedown');
});

function harness(role: 'read' | 'patch') {
  const calls: string[] = [];
  const store = new Store(initialState('h:1'), () => {});
  store.dispatch({ type: 'connected', name: 'n', role });
  const status = {
    protocol: 1,
    agentVersion: '0',
    pid: 1,
    uptimeSec: 1,
    node: 'v20',
    root: '/',
    currentGeneration: 2,
    liveGenerations: [],
    modules: 1,
    patchedModules: [],
    patching: { enabled: true },
    drift: [],
  };
  const gen = (generation: number) => ({
    generation,
    kind: 'patch' as const,
    time: '2026-01-01T00:00:00Z',
    changed: [],
    live: false,
    current: false,
    inflight: 0,
  });
  store.dispatch({
    type: 'snapshot',
    status,
    versions: [{ module: 'src/a.ts', version: 1, generation: 1, hash: 'h', patched: false }],
    history: [gen(1), gen(2)],
  });
  // Effects talk to the agent; here they only record what the controller asked for.
  const effects = {
    rollback: async (to: number) => void calls.push(`rollback ${to}`),
    check: async () => void calls.push('check'),
    refresh: async () => void calls.push('refresh'),
  } as unknown as Effects;
  const c = new Controller({ store, effects, pageSize: () => 10, edit: async (m) => void calls.push(`edit ${m}`) });
  return { store, c, calls };
}

test('with a read token, patch keys only explain why and start nothing', () => {
  const { store, c, calls } = harness('read');
  for (const k of ['e', 'c', 'a', 'r', 'x']) {
    c.key(k);
    assert.match(store.state.notice ?? '', /needs role patch; this token's role is read/);
  }
  assert.deepEqual(calls, []);
  assert.equal(store.state.popup, undefined);
});

test('with a patch token: r opens the chooser, enter and y confirm, the effect gets the generation', () => {
  const { store, c, calls } = harness('patch');
  c.key('e');
  assert.deepEqual(calls, ['edit src/a.ts']);
  c.key('r');
  assert.deepEqual(store.state.popup, { kind: 'rollback', choice: 0 });
  c.key('enter');
  assert.deepEqual(store.state.popup, { kind: 'confirm-rollback', to: 1 });
  c.key('y');
  assert.deepEqual(calls, ['edit src/a.ts', 'rollback 1']);
});

test('while the filter has the keyboard, letters are text, not commands', () => {
  const { store, c, calls } = harness('patch');
  c.key('/');
  for (const k of ['e', 'c', 'q']) c.key(k);
  assert.equal(store.state.filter, 'ecq');
  assert.equal(store.state.quit, false);
  assert.deepEqual(calls, []);
  c.key('escape');
  c.key('?');
  assert.deepEqual(store.state.popup, { kind: 'help', scroll: 0 });
  c.key('down');
  assert.deepEqual(store.state.popup, { kind: 'help', scroll: 1 });
  c.key('escape');
  c.key('q');
  assert.equal(store.state.quit, true, 'q quits at once without a draft');
});

test('the source colouring marks keywords, strings and comments, escapes braces, carries block comments', () => {
  const [a, b, c] = highlight("export const x = { s: 'a' }; // hi\n/* one\ntwo */ return 1;");
  assert.equal(
    a,
    "{cyan-fg}export{/cyan-fg} {cyan-fg}const{/cyan-fg} x = {open} s: {green-fg}'a'{/green-fg} {close}; {gray-fg}// hi{/gray-fg}",
  );
  assert.equal(b, '{gray-fg}/* one{/gray-fg}');
  assert.equal(c, '{gray-fg}two */{/gray-fg} {cyan-fg}return{/cyan-fg} {yellow-fg}1{/yellow-fg};');
});
