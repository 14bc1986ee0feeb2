/**
 * The CLI's own logic, in process: PATCH argument reading, human formatting, target lists, and the
 * mapping from registry codes to exit codes. The binary and the agent are exercised in cli-*.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERROR_CODES, LivepatchError, exitCodeFor, type StatusResult } from '../shared';
import { readPatchArgs, moduleIdOf } from '../client/patch-files';
import { formatHistory, formatStatus, formatUptime, formatVersions, table } from '../client/format';
import { parseTargets } from '../client/cli/commands/apply';
import { splitTarget } from '../client/cli/commands/check';
import { unifiedDiff } from '../client/cli/commands/diff';
import { asLivepatchError } from '../client/cli/output';

function tempTree(): string {
  const root = mkdtempSync(join(tmpdir(), 'lp-cli-unit-'));
  const w = (rel: string, text: string) => {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), text);
  };
  w('src/a.ts', 'export const a = 1;\n');
  w('src/sub/b.ts', 'export const b = 2;\n');
  w('src/types.d.ts', 'declare const x: number;\n');
  w('src/node_modules/dep/index.ts', 'export {};\n');
  w('src/.hidden/c.ts', 'export {};\n');
  w('src/readme.md', '# not a module\n');
  return root;
}

test('a directory PATCH takes its .ts files recursively, with POSIX ids relative to the root, skipping node_modules, dot dirs and .d.ts', () => {
  const root = tempTree();
  try {
    const set = readPatchArgs([join(root, 'src')], { root, id: 'fix-1', message: 'hotfix' });
    assert.deepEqual(Object.keys(set.files).sort(), ['src/a.ts', 'src/sub/b.ts']);
    assert.equal(set.files['src/a.ts'], 'export const a = 1;\n');
    assert.equal(set.id, 'fix-1');
    assert.equal(set.message, 'hotfix');
    assert.equal(set.base, undefined);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('single .ts files use the root for their ids and files outside the root are refused', () => {
  const root = tempTree();
  try {
    const set = readPatchArgs([join(root, 'src/sub/b.ts')], { root });
    assert.deepEqual(Object.keys(set.files), ['src/sub/b.ts']);
    assert.equal(moduleIdOf(join(root, 'src'), join(root, 'src/sub/b.ts')), 'sub/b.ts');
    assert.throws(
      () => readPatchArgs([join(root, 'src/a.ts')], { root: join(root, 'src/sub') }),
      (e: LivepatchError) => e.code === 'LP_ERR_CLI_USAGE' && /outside the project root/.test(e.message),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a .json patch set keeps its id, message, base and verify; flags override id and message', () => {
  const root = tempTree();
  try {
    const base = { 'src/a.ts': 'a'.repeat(64) };
    writeFileSync(
      join(root, 'p.json'),
      JSON.stringify({
        id: 'j1',
        message: 'from json',
        files: { 'src/a.ts': 'export const a = 3;\n' },
        base,
        verify: 'export function ok() {}\n',
      }),
    );
    const set = readPatchArgs([join(root, 'p.json')], { root });
    assert.deepEqual(set, {
      id: 'j1',
      message: 'from json',
      files: { 'src/a.ts': 'export const a = 3;\n' },
      base,
      verify: 'export function ok() {}\n',
    });
    const over = readPatchArgs([join(root, 'p.json')], { root, id: 'j2', message: 'flag' });
    assert.equal(over.id, 'j2');
    assert.equal(over.message, 'flag');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('bad PATCH arguments are usage errors (exit 2) with a readable message', () => {
  const root = tempTree();
  try {
    const bad = (args: string[], re: RegExp) =>
      assert.throws(
        () => readPatchArgs(args, { root }),
        (e: LivepatchError) => e.code === 'LP_ERR_CLI_USAGE' && exitCodeFor(e.code) === 2 && re.test(e.message),
      );
    bad([join(root, 'missing.ts')], /no such file/);
    bad([join(root, 'src/readme.md')], /not a \.ts file/);
    bad([], /no PATCH/);
    writeFileSync(join(root, 'bad.json'), '{"files": {}}');
    bad([join(root, 'bad.json')], /not a valid patch set/);
    writeFileSync(join(root, 'worse.json'), '{ nope');
    bad([join(root, 'worse.json')], /not a valid patch set/);
    writeFileSync(join(root, 'extra.json'), JSON.stringify({ files: { 'src/a.ts': 'different' } }));
    bad([join(root, 'src/a.ts'), join(root, 'extra.json')], /given twice/);
    mkdirSync(join(root, 'empty'));
    bad([join(root, 'empty')], /no \.ts files/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('every registry code maps to one of the documented exit codes, and unknown throwables become internal errors', () => {
  for (const code of ERROR_CODES) assert.ok([1, 2, 3, 4, 5, 6].includes(exitCodeFor(code)), code);
  assert.equal(exitCodeFor('LP_ERR_PATCH_TYPE'), 1);
  assert.equal(exitCodeFor('LP_ERR_CLI_USAGE'), 2);
  assert.equal(exitCodeFor('LP_ERR_AUTH_FORBIDDEN'), 3);
  assert.equal(exitCodeFor('LP_ERR_CONN_REFUSED'), 4);
  assert.equal(exitCodeFor('LP_ERR_PATCH_CONFLICT'), 5);
  assert.equal(exitCodeFor('LP_ERR_WATCH_REVERTED'), 6);
  const e = asLivepatchError(new TypeError('boom'));
  assert.equal(e.code, 'LP_ERR_INTERNAL');
  assert.match(e.message, /boom/);
});

test('tables align columns and leave no trailing spaces', () => {
  const t = table(
    ['A', 'LONGER'],
    [
      ['xxxx', 'y'],
      ['z', ''],
    ],
  );
  assert.equal(t, 'A     LONGER\nxxxx  y\nz\n');
  assert.equal(formatUptime(5), '5s');
  assert.equal(formatUptime(65), '1m 05s');
  assert.equal(formatUptime(3725), '1h 02m 05s');
  assert.equal(formatUptime(90000), '1d 01h 00m');
});

test('versions, status and history render as readable tables', () => {
  const v = formatVersions([
    { module: 'src/rates.ts', version: 2, generation: 3, hash: 'ab'.repeat(32), patched: true },
    { module: 'src/main.ts', version: 1, generation: 1, hash: 'cd'.repeat(32), patched: false },
  ]);
  assert.deepEqual(v.split('\n'), [
    'MODULE        VERSION  GENERATION  HASH          PATCHED',
    'src/main.ts   1        1           cdcdcdcdcdcd  no',
    'src/rates.ts  2        3           abababababab  yes',
    '',
  ]);
  const s: StatusResult = {
    protocol: 1,
    agentVersion: '0.1.0',
    pid: 42,
    uptimeSec: 61,
    node: 'v20.0.0',
    root: '/app',
    currentGeneration: 3,
    liveGenerations: [
      { generation: 2, inflight: 1, current: false },
      { generation: 3, inflight: 0, current: true },
    ],
    modules: 4,
    patchedModules: ['src/rates.ts'],
    patching: { enabled: true },
    drift: [],
  };
  const out = formatStatus(s);
  assert.match(out, /^generation {2}3$/m);
  assert.match(out, /^live {8}3 \(current\): 0 in flight, 2: 1 in flight$/m);
  assert.match(out, /^modules {5}4 \(1 patched: src\/rates\.ts\)$/m);
  assert.match(out, /^drift {7}none$/m);
  const h = formatHistory([
    { generation: 1, kind: 'deploy', time: '2026-11-27T01:00:00.000Z', changed: [], live: false, current: false, inflight: 0 },
    {
      generation: 2,
      kind: 'patch',
      time: '2026-11-27T01:05:00.000Z',
      who: 'ci',
      message: 'fix rates',
      changed: ['src/rates.ts'],
      live: true,
      current: true,
      inflight: 0,
    },
  ]);
  const lines = h.split('\n');
  assert.match(lines[1]!, /^2 +patch +2026-11-27 01:05:00Z +ci +current +src\/rates\.ts +fix rates$/);
  assert.match(lines[2]!, /^1 +deploy/);
});

test('agent lists, the optional check target and unified diffs', () => {
  assert.deepEqual(parseTargets('127.0.0.1:1,unix:/tmp/a.sock'), ['127.0.0.1:1', 'unix:/tmp/a.sock']);
  assert.throws(
    () => parseTargets('127.0.0.1:1,,x'),
    (e: LivepatchError) => e.code === 'LP_ERR_CLI_USAGE',
  );
  assert.throws(() => parseTargets('h:1,h:1'), /twice/);
  assert.deepEqual(splitTarget(['127.0.0.1:9', 'src']), { target: '127.0.0.1:9', paths: ['src'] });
  assert.deepEqual(splitTarget(['src/a.ts', 'src/b.ts']), { paths: ['src/a.ts', 'src/b.ts'] });
  assert.deepEqual(splitTarget(['127.0.0.1:9']), { paths: ['127.0.0.1:9'] });
  const d = unifiedDiff('src/a.ts', 'x\ny\n', 'x\nz\n');
  assert.match(d, /^--- a\/src\/a\.ts/m);
  assert.match(d, /^\+\+\+ b\/src\/a\.ts/m);
  assert.match(d, /^-y$/m);
  assert.match(d, /^\+z$/m);
  assert.equal(unifiedDiff('src/a.ts', 'same', 'same'), '');
  assert.match(unifiedDiff('src/new.ts', undefined, 'n\n'), /^--- \/dev\/null/m);
});
