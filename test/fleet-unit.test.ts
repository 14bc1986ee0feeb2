/**
 * Fleet pieces that need no etcd: the address form, --canary, which log entries are in effect after
 * rollbacks, stored-record checks and limits, the rollout's watch arguments, how the canary verdict
 * combines the canaries' watch verdicts with --canary-check, and the CLI's usage errors and
 * unreachable-etcd exit code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canaryCount, canaryVerdict, parseCanary, type CanaryContext } from '../client/cli/fleet-etcd';
import {
  checkStoredPatch,
  effectivePatches,
  isFleetUrl,
  MAX_FLEET_RECORD_BYTES,
  parseFleetUrl,
  parseRecord,
  rolloutWatch,
  type LogEntry,
  type VerdictRecord,
} from '../shared/fleet';
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
  assert.deepEqual(parseFleetUrl('etcd://10.0.0.1:2379,etcd-b:2379/shop'), {
    endpoints: ['10.0.0.1:2379', 'etcd-b:2379'],
    name: 'shop',
    prefix: 'livepatch/fleets/shop/',
  });
  assert.equal(parseFleetUrl('etcd://[::1]:2379/a.b_c-1').name, 'a.b_c-1');
  assert.equal(isFleetUrl('ETCD://x:1/y'), true);
  assert.equal(isFleetUrl('127.0.0.1:1'), false);
  for (const bad of [
    'etcd://x:1',
    'etcd://x:1/',
    'etcd://x/shop',
    'etcd://x:99999/shop',
    'etcd://x:1/a/b',
    'etcd://x:1/-a',
    'etcd://x:1/' + 'a'.repeat(64),
    'etcd://x:1/sh op',
  ]) {
    assert.equal(
      code(() => parseFleetUrl(bad)),
      'LP_ERR_FLEET_URL',
      bad,
    );
  }
});

test('--canary: N members or P% (at least one, at most all)', () => {
  assert.deepEqual(parseCanary('3'), { count: 3 });
  assert.deepEqual(parseCanary('10%'), { percent: 10 });
  for (const bad of ['0', '0%', '101%', '-1', '1.5', 'x', ''])
    assert.equal(
      code(() => parseCanary(bad)),
      'LP_ERR_CLI_USAGE',
      bad,
    );
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
  assert.equal(
    code(() => checkStoredPatch({ files: {} })),
    'LP_ERR_FLEET_RECORD',
  );
  assert.equal(
    code(() => checkStoredPatch({ id: 'a', files: { x: 1 } })),
    'LP_ERR_FLEET_RECORD',
  );
  assert.equal(
    code(() => checkStoredPatch({ id: 'a', files: {}, message: 3 })),
    'LP_ERR_FLEET_RECORD',
  );
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

test("a rollout's watch arguments: absent, valid (with a scope), or LP_ERR_FLEET_RECORD", () => {
  assert.equal(rolloutWatch({}), undefined);
  assert.deepEqual(rolloutWatch({ watch: { durationMs: 5000, minRequests: 10 }, watchScope: 'canaries' }), {
    args: { durationMs: 5000, minRequests: 10 },
    scope: 'canaries',
  });
  assert.equal(
    code(() => rolloutWatch({ watch: { durationMs: 5000 } })),
    'LP_ERR_FLEET_RECORD',
  );
  assert.equal(
    code(() => rolloutWatch({ watch: { durationMs: 50 }, watchScope: 'all' })),
    'LP_ERR_FLEET_RECORD',
  );
  assert.equal(
    code(() => rolloutWatch({ watch: { durationMs: 5000, extra: 1 } as never, watchScope: 'all' })),
    'LP_ERR_FLEET_RECORD',
  );
});

test("canary verdict: every canary's watch must be kept and --canary-check must pass; the first failure decides", async () => {
  const verdict = (v: VerdictRecord['verdict'], reason?: string): VerdictRecord => ({
    verdict: v,
    ...(reason ? { reason } : {}),
    canary: true,
    time: new Date().toISOString(),
  });
  const base = (verdicts: Map<string, VerdictRecord>[], extra: Partial<CanaryContext> = {}): CanaryContext => {
    let n = 0;
    return {
      fleet: 'f',
      rollout: 'r1',
      patchId: 'p',
      canaries: [
        { id: 'm1', address: '127.0.0.1:1' },
        { id: 'm2', address: '127.0.0.1:2' },
      ],
      deadline: Date.now() + 20_000,
      watch: { durationMs: 1000 },
      // Each read shows the verdicts written so far, as successive reads of watch/RID/ would.
      readVerdicts: async () => verdicts[Math.min(n++, verdicts.length - 1)]!,
      env: process.env,
      ...extra,
    };
  };
  const kept = new Map([
    ['m1', verdict('kept')],
    ['m2', verdict('kept')],
  ]);
  assert.deepEqual(await canaryVerdict(base([new Map(), new Map([['m1', verdict('kept')]]), kept])), { ok: true });
  const tripped = await canaryVerdict(
    base([
      new Map([['m1', verdict('kept')]]),
      new Map([
        ['m1', verdict('kept')],
        ['m2', verdict('reverted', 'errorRate 1 > 0.01')],
      ]),
    ]),
  );
  assert.equal(tripped.ok, false);
  assert.deepEqual(tripped.reverted, { reason: 'errorRate 1 > 0.01', target: '127.0.0.1:2' });
  const superseded = await canaryVerdict(base([new Map([['m1', verdict('superseded')]])]));
  assert.equal(superseded.ok, false);
  assert.equal(superseded.reverted, undefined);
  assert.match(superseded.reason!, /127\.0\.0\.1:1: superseded/);
  // Both given: a failing check fails a kept watch, and a reverted watch fails before a slow passing check ends.
  const node = `"${process.execPath}"`;
  const checkFails = await canaryVerdict(base([kept], { canaryCheck: `${node} -e "process.exit(3)"` }));
  assert.deepEqual(checkFails, { ok: false, reason: 'the canary check exited 3' });
  const t0 = Date.now();
  const watchFails = await canaryVerdict(
    base([new Map([['m1', verdict('reverted', 'p99')]])], { canaryCheck: `${node} -e "setTimeout(() => process.exit(0), 5000)"` }),
  );
  assert.equal(watchFails.reverted?.target, '127.0.0.1:1');
  assert.ok(Date.now() - t0 < 4000, 'the watch failure did not wait for the check');
  assert.deepEqual(await canaryVerdict(base([kept], { canaryCheck: `${node} -e "process.exit(0)"` })), { ok: true });
  // No verdict by the deadline: failed.
  const late = await canaryVerdict(base([new Map()], { deadline: Date.now() + 300 }));
  assert.equal(late.ok, false);
  assert.match(late.reason!, /did not come before the deadline/);
});
