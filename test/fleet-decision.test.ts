/**
 * The CLI's decision logic against a real etcd, with lightweight members (the agent's real fleet code
 * over stand-in pipelines, test/helpers/fleet-sim.ts) so members can join at an exact moment: a member
 * that joins between "every member staged" and the decision transaction changes the acks, the
 * transaction fails, and the CLI reads again and commits (it does not abort); the late member commits
 * too. A fleet with no members refuses the apply (LP_ERR_FLEET_NO_MEMBERS). A client that dies after
 * its canaries committed leaves an undecided rollout: a member aborts it at the deadline and the canary
 * rolls back.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { applyThroughFleet } from '../client/cli/fleet-etcd';
import { parseFleetUrl } from '../shared/fleet';
import { FleetMember } from '../server/fleet/member';
import { ETCD, rawEtcd, requireEtcd, skipWithoutEtcd, uniqueFleet } from './helpers/etcd';
import { standIn, type StandIn } from './helpers/fleet-sim';

const skip = skipWithoutEtcd;
const NAME = uniqueFleet('dec');
const members: FleetMember[] = [];

function join(sim: StandIn): FleetMember {
  const m = new FleetMember({
    address: parseFleetUrl(`etcd://${requireEtcd()}/${NAME}`),
    engine: sim.engine,
    pipeline: sim.pipeline,
    leaseTtlSec: 2,
    log: () => undefined,
  });
  m.setAddress(`sim:${members.length}`);
  members.push(m);
  return m;
}

async function memberCount(): Promise<number> {
  const c = rawEtcd();
  try {
    return (await c.getAll().prefix(`livepatch/fleets/${NAME}/members/`).keys()).length;
  } finally {
    c.close();
  }
}

async function until(cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 50));
}

after(async () => {
  await Promise.all(members.map((m) => m.close()));
  if (ETCD) {
    const c = rawEtcd();
    await c
      .delete()
      .prefix(`livepatch/fleets/${NAME}/`)
      .catch(() => undefined);
    c.close();
  }
});

test('no members: the apply is refused and nothing is written to the log', { skip }, async () => {
  const out = await applyThroughFleet(`etcd://${ETCD}/${NAME}`, { files: { 'src/x.ts': 'export {}' } });
  assert.equal(out.ok, false);
  assert.equal(out.error?.code, 'LP_ERR_FLEET_NO_MEMBERS');
  assert.equal(out.generation, 0);
});

test('a member joining between "all staged" and the decision does not abort the rollout; it commits too', { skip }, async () => {
  const sims = [standIn(), standIn()];
  for (const s of sims) join(s);
  await until(async () => (await memberCount()) === 2);
  const late = standIn();
  const notes: string[] = [];
  const running = applyThroughFleet(
    `etcd://${ETCD}/${NAME}`,
    { id: 'p1', files: { 'src/x.ts': 'export const x = 1;\n' } },
    { env: { ...process.env, LIVEPATCH_FLEET_DECIDE_DELAY_MS: '1500' }, note: (l) => notes.push(l) },
  );
  await until(async () => notes.some((n) => /all 2 member\(s\) staged/.test(n)));
  join(late); // stages the open rollout and acks while the CLI waits to decide
  const out = await running;
  assert.equal(out.ok, true, JSON.stringify(out));
  assert.equal(out.generation, 1);
  for (const s of sims) assert.deepEqual(s.committed, ['p1']);
  await until(async () => late.committed.length === 1);
  assert.deepEqual(late.committed, ['p1'], 'the late member committed the staged set when the log entry came');
});

test('a client that dies after its canaries committed: at the deadline a member aborts, the canary rolls back', { skip }, async () => {
  const c = rawEtcd();
  const P = `livepatch/fleets/${NAME}/`;
  try {
    const ids = (await c.getAll().prefix(`${P}members/`).keys()).map((k) => k.slice(`${P}members/`.length)).sort();
    assert.equal(ids.length, 3);
    const acks = async () =>
      Object.fromEntries(
        Object.entries(await c.getAll().prefix(`${P}acks/dead-1/`).strings()).map(([k, v]) => [
          k.slice(`${P}acks/dead-1/`.length),
          JSON.parse(v).state,
        ]),
      );
    // What a client writes before it dies: the proposal, then (all staged) the canary record; never a decision.
    await c.put(`${P}rollouts/dead-1`).value(
      JSON.stringify({
        id: 'dead-1',
        patch: { id: 'p2', files: { 'src/x.ts': 'export const x = 2;\n' } },
        baseSeq: 1,
        deadline: Date.now() + 3000,
        by: 'test',
        createdAt: new Date().toISOString(),
      }),
    );
    await until(async () => Object.values(await acks()).filter((s) => s === 'staged').length === 3);
    await c.put(`${P}canary/dead-1`).value(JSON.stringify({ members: [ids[0]] }));
    await until(async () => (await acks())[ids[0]!] === 'committed');
    await until(async () => (await acks())[ids[0]!] === 'rolled-back');
    assert.equal(await c.get(`${P}decision/dead-1`).string(), 'abort', 'a member wrote the abort at the deadline');
    const states = await acks();
    assert.deepEqual(Object.values(states).sort(), ['aborted', 'aborted', 'rolled-back']);
    assert.equal(await c.get(`${P}head`).string(), '1', 'the fleet generation did not move');
  } finally {
    c.close();
  }
});
