/**
 * Fleet pieces that need no etcd: the address form, --canary, which log entries are in effect after
 * rollbacks, stored-record checks and limits, and the CLI's usage errors and unreachable-etcd exit code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canaryCount, parseCanary } from '../client/cli/fleet-etcd';
import { checkStoredPatch, effectivePatches, isFleetUrl, MAX_FLEET_RECORD_BYTES, parseFleetUrl, parseRecord, type LogEntry } from '../shared/fleet';
import { LivepatchError } from '../shared';
import { runCli } from './helpers/project';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as LivepatchError).code;
  }
  return 'no error';
};

test('fleet addresses: endpoints, name and key prefix; malformed ones are LP_ERR_FLEET_URL', () => {
  assert.deepEqual(parseFleetUrl('etcd://10.0.0.1:2379,etcd-b:2379/shop'), { endpoints: ['10.0.0.1:2379', 'etcd-b:2379'], name: 'shop', prefix: 'livepatch/fleets/shop/' });
  assert.equal(parseFleetUrl('etcd://[::1]:2379/a.b_c-1').name, 'a.b_c-1');
  assert.equal(isFleetUrl('ETCD://x:1/y'), true);
  assert.equal(isFleetUrl('127.0.0.1:1'), false);
  for (const bad of ['etcd://x:1', 'etcd://x:1/', 'etcd://x/shop', 'etcd://x:99999/shop', 'etcd://x:1/a/b', 'etcd://x:1/-a', 'etcd://x:1/' + 'a'.repeat(64), 'etcd://x:1/sh op']) {
    assert.equal(code(() => parseFleetUrl(bad)), 'LP_ERR_FLEET_URL', bad);
  }
});

test('--canary: N members or P% (at least one, at most all)', () => {
  assert.deepEqual(parseCanary('3'), { count: 3 });
  assert.deepEqual(parseCanary('10%'), { percent: 10 });
  for (const bad of ['0', '0%', '101%', '-1', '1.5', 'x', '']) assert.equal(code(() => parseCanary(bad)), 'LP_ERR_CLI_USAGE', bad);
  assert.equal(canaryCount({ count: 3 }, 2), 2);
  assert.equal(canaryCount({ percent: 10 }, 4), 1);
  assert.equal(canaryCount({ percent: 10 }, 25), 3);
  assert.equal(canaryCount({ percent: 100 }, 7), 7);
});

test('the patch sets in effect follow rollbacks, including a rollback to a state that was itself rolled back', () => {
  const p = (seq: number): LogEntry => ({ seq, kind: 'patch', rollout: `r${seq}`, patch: { id: `p${seq}`, files: {} }, by: 'u', time: '' });
  const rb = (seq: number, to: number): LogEntry => ({ seq, kind: 'rollback', to, by: 'u', time: '' });
  const ids = (es: LogEntry[], seq?: number) => effectivePatches(es, seq).map((e) => e.seq);
  const log = [p(1), p(2), rb(3, 1), p(4), rb(5, 2), rb(6, 0)];
  assert.deepEqual(ids([]), []);
  assert.deepEqual(ids(log, 2), [1, 2]);
  assert.deepEqual(ids(log, 3), [1]);
  assert.deepEqual(ids(log, 4), [1, 4]);
  assert.deepEqual(ids(log, 5), [1, 2]);
  assert.deepEqual(ids(log), []);
});

test('stored records: size limit, JSON objects only; a stored patch set needs an id and string sources, extra fields pass through', () => {
  assert.deepEqual(parseRecord('{"a":1}'), { a: 1 });
  assert.equal(parseRecord('[1]'), undefined);
  assert.equal(parseRecord('nope'), undefined);
  assert.equal(parseRecord(JSON.stringify({ x: 'y'.repeat(MAX_FLEET_RECORD_BYTES) })), undefined);
  const signed = { id: 'a', files: { 'src/x.ts': 'export {}' }, signature: 'sig', signer: 'k1' };
  assert.deepEqual(checkStoredPatch(signed), signed);
  assert.equal(code(() => checkStoredPatch({ files: {} })), 'LP_ERR_FLEET_RECORD');
  assert.equal(code(() => checkStoredPatch({ id: 'a', files: { x: 1 } })), 'LP_ERR_FLEET_RECORD');
  assert.equal(code(() => checkStoredPatch({ id: 'a', files: {}, message: 3 })), 'LP_ERR_FLEET_RECORD');
});

test('CLI: a malformed fleet address exits 2, fleet flags on the direct form exit 2, an unreachable etcd exits 4', async () => {
  const bad = await runCli(['apply', 'etcd://127.0.0.1:1/a/b', 'missing.ts', '--json']);
  assert.equal(bad.code, 2);
  assert.equal(JSON.parse(bad.stdout).error.code, 'LP_ERR_FLEET_URL');
  const direct = await runCli(['apply', '127.0.0.1:1', 'missing.ts', '--canary', '1', '--json']);
  assert.equal(direct.code, 2);
  assert.match(JSON.parse(direct.stdout).error.message, /--canary needs a fleet address/);
  const check = await runCli(['apply', 'etcd://127.0.0.1:1/f', 'missing.ts', '--canary-check', 'true', '--json']);
  assert.equal(check.code, 2);
  const down = await runCli(['status', 'etcd://127.0.0.1:1/f', '--json']);
  assert.equal(down.code, 4, down.stderr);
  assert.equal(JSON.parse(down.stdout).error.code, 'LP_ERR_FLEET_UNREACHABLE');
  assert.doesNotMatch(down.stdout, /\n\s+at /, 'no stack trace');
});
