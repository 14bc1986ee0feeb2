/**
 * The TUI's view state without a terminal: reduce() over plain actions, the selectors and the main
 * pane's content.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GenerationSummary, ModuleVersionInfo, SourceResult, StatusResult } from '../shared';
import { DRAFT_FILE, initialState, reduce, signaturesRequired, type Action, type TuiState } from '../client/tui/state';
import { mainLines } from '../client/tui/content';
import { draftPatch, rollbackTargets, visibleModules } from '../client/tui/selectors';
import { statusText } from '../client/tui/views/panes';

const mod = (module: string, version = 1, patched = false): ModuleVersionInfo => ({
  module,
  version,
  generation: 1,
  hash: `${module}-h${version}`.padEnd(8, '0'),
  patched,
});
const status = (current: number): StatusResult => ({
  protocol: 1,
  agentVersion: '0',
  pid: 1,
  uptimeSec: 1,
  node: 'v20',
  root: '/',
  currentGeneration: current,
  liveGenerations: [{ generation: current, inflight: 0, current: true }],
  modules: 3,
  patchedModules: [],
  patching: { enabled: true },
  drift: [],
});
const gen = (generation: number, kind: GenerationSummary['kind'] = 'patch'): GenerationSummary => ({
  generation,
  kind,
  time: '2026-01-01T00:00:00.000Z',
  changed: [],
  live: false,
  current: false,
  inflight: 0,
});
const src = (module: string, source: string, version = 1): SourceResult => ({
  module,
  version,
  generation: 1,
  hash: `${module}-h${version}`.padEnd(8, '0'),
  source,
});

function run(s: TuiState, ...actions: Action[]): TuiState {
  return actions.reduce(reduce, s);
}

function connected(role: 'read' | 'patch' | 'admin' = 'patch'): TuiState {
  return run(
    initialState('127.0.0.1:9'),
    { type: 'connected', name: 'alice', role },
    {
      type: 'snapshot',
      status: status(2),
      versions: [mod('src/a.ts'), mod('src/b.ts', 2, true), mod('src/lib/c.ts')],
      history: [gen(1, 'deploy'), gen(2)],
    },
  );
}

test('a snapshot selects the first module and clears the stale mark', () => {
  const s = connected();
  assert.equal(s.selected, 'src/a.ts');
  assert.equal(s.stale, false);
  assert.equal(s.conn, 'connected');
});

test('moving in the modules pane changes the selection and stops at the ends', () => {
  let s = connected();
  s = run(s, { type: 'move', delta: 1, page: 0 });
  assert.equal(s.selected, 'src/b.ts');
  s = run(s, { type: 'move', delta: 1, page: 10 });
  assert.equal(s.selected, 'src/lib/c.ts');
  s = run(s, { type: 'move', delta: -5, page: 0 });
  assert.equal(s.selected, 'src/a.ts');
});

test('the filter narrows the modules and keeps the selection on a visible one', () => {
  let s = run(connected(), { type: 'filterStart' }, ...'lib'.split('').map((key) => ({ type: 'filterKey' as const, key })));
  assert.deepEqual(
    visibleModules(s).map((m) => m.module),
    ['src/lib/c.ts'],
  );
  assert.equal(s.selected, 'src/lib/c.ts');
  assert.equal(s.filtering, true);
  s = run(s, { type: 'filterKey', key: 'backspace' }, { type: 'filterKey', key: 'enter' });
  assert.equal(s.filter, 'li');
  assert.equal(s.filtering, false);
  s = run(s, { type: 'filterStart' }, { type: 'filterKey', key: 'escape' });
  assert.equal(s.filter, '');
  assert.equal(visibleModules(s).length, 3);
});

test('tabs cycle both ways and number keys pick one', () => {
  let s = connected();
  s = run(s, { type: 'tabStep', delta: -1 });
  assert.equal(s.tab, 'diff');
  s = run(s, { type: 'tabStep', delta: 1 }, { type: 'tabStep', delta: 1 });
  assert.equal(s.tab, 'exports');
  s = run(s, { type: 'tab', tab: 'history' });
  assert.equal(s.tab, 'history');
});

test('focus cycles through the REPL only for admins', () => {
  const ring = (s: TuiState) => [1, 2, 3, 4].map(() => (s = reduce(s, { type: 'focus', delta: 1 })).focus);
  assert.deepEqual(ring(connected('patch')), ['main', 'events', 'modules', 'main']);
  assert.deepEqual(ring(connected('admin')), ['main', 'events', 'repl', 'modules']);
});

test('an edit joins the draft; editing back to the live text leaves it', () => {
  const live = src('src/a.ts', 'export const a = 1;\n');
  let s = run(connected(), { type: 'source', result: live }, { type: 'draftSet', module: 'src/a.ts', text: 'export const a = 2;\n', live });
  s = run(s, { type: 'draftSet', module: 'src/b.ts', text: 'x', live: src('src/b.ts', 'y', 2) });
  assert.deepEqual(Object.keys(s.draft).sort(), ['src/a.ts', 'src/b.ts']);
  const patch = draftPatch(s, 'msg');
  assert.deepEqual(patch.files, { 'src/a.ts': 'export const a = 2;\n', 'src/b.ts': 'x' });
  assert.equal(patch.base!['src/a.ts'], live.hash);
  assert.equal(patch.message, 'msg');
  s = run(s, { type: 'draftSet', module: 'src/a.ts', text: live.source, live });
  assert.deepEqual(Object.keys(s.draft), ['src/b.ts']);
  s = run(s, { type: 'draftDiscard' });
  assert.deepEqual(s.draft, {});
});

test('the source tab shows the draft text with line numbers, the diff tab shows the change', () => {
  const live = src('src/a.ts', 'export const a = 1;\n');
  const s = run(
    connected(),
    { type: 'source', result: live },
    { type: 'draftSet', module: 'src/a.ts', text: 'export const a = 2;\n', live },
  );
  const source = mainLines(s).join('\n');
  assert.match(source, /1 │.*= .*2/);
  const diff = mainLines(run(s, { type: 'tab', tab: 'diff' })).join('\n');
  assert.match(diff, /-export const a = 1;/);
  assert.match(diff, /\+export const a = 2;/);
});

test('failed checks list diagnostics; jumping selects the module, the source tab and the line', () => {
  const live = src('src/b.ts', Array.from({ length: 30 }, (_, i) => `const v${i} = ${i};`).join('\n'), 2);
  let s = run(connected(), { type: 'draftSet', module: 'src/b.ts', text: live.source + '\nconst z: string = 1;', live });
  const diagnostic = {
    file: 'src/b.ts',
    line: 31,
    column: 7,
    code: 2322,
    category: 'error' as const,
    message: "Type 'number' is not assignable to type 'string'.",
  };
  s = run(
    s,
    { type: 'tab', tab: 'history' },
    { type: 'checked', result: { ok: false, diagnostics: [diagnostic], checkedFiles: 3, durationMs: 5 } },
  );
  assert.deepEqual(s.popup, { kind: 'diagnostics', choice: 0 });
  s = run(s, { type: 'jump', diagnostic });
  assert.equal(s.popup, undefined);
  assert.equal(s.selected, 'src/b.ts');
  assert.equal(s.tab, 'source');
  assert.equal(s.focus, 'main');
  assert.deepEqual(s.mark, { module: 'src/b.ts', line: 31 });
  const visible = mainLines(s).slice(s.scroll);
  assert.match(visible.join('\n'), />.*31 │/);
  assert.match(visible.join('\n'), /not assignable/);
});

test('a draft edited from a version someone else has since replaced is flagged in the diff', () => {
  const live = src('src/a.ts', 'a');
  let s = run(connected(), { type: 'draftSet', module: 'src/a.ts', text: 'b', live }, { type: 'tab', tab: 'diff' });
  assert.doesNotMatch(mainLines(s).join('\n'), /conflict/);
  s = run(s, { type: 'snapshot', status: status(3), versions: [mod('src/a.ts', 2), mod('src/b.ts')], history: [] });
  assert.match(mainLines(s).join('\n'), /src\/a\.ts is now v2 live \(edited from v1\): applying will be refused as a conflict/);
});

test('a successful apply clears the draft and reports the new generation', () => {
  const live = src('src/a.ts', 'a');
  let s = run(connected(), { type: 'draftSet', module: 'src/a.ts', text: 'b', live });
  s = run(s, {
    type: 'applied',
    kind: 'patch',
    result: { generation: 3, previousGeneration: 2, changed: [{ module: 'src/a.ts', version: 2, hash: 'h' }] },
  });
  assert.deepEqual(s.draft, {});
  assert.equal(s.popup?.kind, 'message');
  assert.match((s.popup as { lines: string[] }).lines.join('\n'), /Generation 3 is live/);
});

test('signed-only agents: status says so; the file name is edited like text; writing keeps the draft and says how to sign', () => {
  const signedStatus = { ...status(2), patching: { enabled: true, signaturesRequired: true } };
  let s = run(
    connected(),
    { type: 'status', status: signedStatus },
    { type: 'draftSet', module: 'src/a.ts', text: 'b', live: src('src/a.ts', 'a') },
  );
  assert.equal(signaturesRequired(s), true);
  assert.equal(signaturesRequired(connected()), false);
  assert.match(statusText(s), /signed sets only/);
  assert.doesNotMatch(statusText(connected()), /signed sets only/);
  s = run(
    s,
    { type: 'popup', popup: { kind: 'signed-only', path: DRAFT_FILE } },
    { type: 'popupKey', key: 'backspace' },
    { type: 'popupKey', key: 'X' },
  );
  assert.deepEqual(s.popup, { kind: 'signed-only', path: 'livepatch-draft.jsoX' });
  const ok = run(s, { type: 'exported', path: 'd.json', modules: ['src/a.ts'] });
  assert.equal(ok.popup?.kind, 'message');
  assert.match((ok.popup as { lines: string[] }).lines.join('\n'), /livepatch sign d\.json --key .* --out signed\.json/);
  assert.doesNotMatch((ok.popup as { lines: string[] }).lines.join('\n'), /--compile/);
  // A host that checks on the client runs the signed JavaScript: the hint signs it too.
  const slim = run(
    { ...s, status: { ...s.status!, patching: { ...s.status!.patching, checks: 'client' } } },
    {
      type: 'exported',
      path: 'd.json',
      modules: ['src/a.ts'],
    },
  );
  assert.match((slim.popup as { lines: string[] }).lines.join('\n'), /--compile --out signed\.json\n.*signed\.json --check-here/);
  assert.deepEqual(Object.keys(ok.draft), ['src/a.ts'], 'the draft stays');
  assert.match(ok.log.at(-1)!.text, /draft written to d\.json for signing/);
  const failed = run(s, { type: 'exported', path: 'd.json', modules: ['src/a.ts'], error: 'cannot write d.json: EACCES' });
  assert.deepEqual(failed.popup, { kind: 'message', title: 'Draft not written', lines: ['cannot write d.json: EACCES'], error: true });
});

test('rollback targets exclude the current generation, newest first', () => {
  const s = run(connected(), {
    type: 'snapshot',
    status: status(3),
    versions: [mod('src/a.ts')],
    history: [gen(1, 'deploy'), gen(2), gen(3)],
  });
  assert.deepEqual(
    rollbackTargets(s).map((g) => g.generation),
    [2, 1],
  );
  const p = run(s, { type: 'popup', popup: { kind: 'rollback', choice: 0 } }, { type: 'popupMove', delta: 5 });
  assert.deepEqual(p.popup, { kind: 'rollback', choice: 1 });
});

test('a dropped connection marks the state stale and logs the drop once per reason', () => {
  let s = connected();
  const drop: Action = { type: 'disconnected', reason: 'refused', retryInMs: 1000 };
  s = run(s, drop, { type: 'connecting', attempt: 1 }, drop, { type: 'connecting', attempt: 2 }, drop);
  assert.equal(s.stale, true);
  assert.equal(s.conn, 'disconnected');
  assert.equal(s.log.filter((l) => l.kind === 'error').length, 1);
  assert.equal(s.modules.length, 3, 'the last state is kept');
  s = run(
    s,
    { type: 'connected', name: 'alice', role: 'patch' },
    { type: 'snapshot', status: status(2), versions: [mod('src/a.ts')], history: [] },
  );
  assert.equal(s.stale, false);
});

test('events from anyone go to the log', () => {
  const s = run(connected(), {
    type: 'event',
    event: {
      event: 'committed',
      generation: 3,
      previousGeneration: 2,
      kind: 'patch',
      who: 'bob',
      message: 'fix',
      changed: ['src/a.ts'],
      time: '2026-01-01T10:11:12.000Z',
    },
  });
  assert.equal(s.log.at(-1)!.text, '10:11:12 patch → gen 3 by bob: fix [src/a.ts]');
});

test('the REPL prompt edits, submits once and shows output', () => {
  let s = run(connected('admin'), ...'1 + 1'.split('').map((key) => ({ type: 'replKey' as const, key: key === ' ' ? 'space' : key })));
  assert.equal(s.repl.input, '1 + 1');
  s = run(s, { type: 'replSubmit' }, { type: 'replSubmit' });
  assert.equal(s.repl.lines.length, 1);
  assert.equal(s.repl.pending, true);
  s = run(s, { type: 'replOutput', lines: ['2'], error: false });
  assert.deepEqual(
    s.repl.lines.map((l) => l.text),
    ['> 1 + 1', '2'],
  );
  assert.equal(s.repl.pending, false);
});

test('quarantined patches and unreadable journal lines show in the status bar and the History tab', () => {
  const q = {
    seq: 4,
    patchId: 'boom',
    who: 'alice',
    committedAt: '2026-01-01T00:00:00.000Z',
    quarantinedAt: '2026-01-01T00:01:00.000Z',
    reason: 'the host exited with code 1 1.5 s after the patch was applied',
    modules: ['src/a.ts'],
  };
  const st: StatusResult = {
    ...status(2),
    quarantined: [q],
    journal: { dir: '/j', replay: true, records: 5, unreadable: [{ line: 2, offset: 10, bytes: 20, reason: 'checksum mismatch' }] },
  };
  let s = run(
    connected(),
    { type: 'snapshot', status: st, versions: [mod('src/a.ts')], history: [gen(1, 'deploy'), gen(2)] },
    { type: 'tab', tab: 'history' },
  );
  assert.match(statusText(s), /quarantined: 1/);
  assert.match(statusText(s), /journal: 1 unreadable/);
  const lines = mainLines(s).join('\n');
  assert.match(lines, /quarantined \(not re-applied at start/);
  assert.match(lines, /boom +2026-01-01 00:00:00Z +alice +2026-01-01 00:01:00Z +src\/a\.ts +the host exited/);
  assert.match(lines, /the host exited with code 1/);
  s = run(s, { type: 'snapshot', status: status(2), versions: [mod('src/a.ts')], history: [gen(1, 'deploy'), gen(2)] });
  assert.doesNotMatch(statusText(s), /quarantined/);
  assert.doesNotMatch(mainLines(s).join('\n'), /quarantined/);
});
