/**
 * Benchmark — a fleet of 200 members against one etcd on this machine: time from `apply` (the CLI's
 * applyThroughFleet) to every member committed, and what that costs etcd (requests, writes, watch
 * events, CPU, database size).
 *
 * A simulation, not 200 apps: every member is the agent's real fleet code (server/fleet/member.ts)
 * with its own etcd client (its own gRPC connection, lease, keep-alives and watches), all in this one
 * process, over a stand-in pipeline whose stage and commit take no time. So the figures are the
 * coordination's own cost; a real member adds its type check and staging (pipeline benchmarks) to the
 * stage phase, in parallel across members.
 *
 * Usage: node dist/bench/fleet.js   (env BENCH_MEMBERS=200, BENCH_ROLLOUTS=5; BENCH_ETCD=HOST:PORT uses
 * a running etcd instead of starting one with scripts/start-etcd.sh — then etcd's CPU is not measured)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyThroughFleet } from '../client/cli/fleet-etcd';
import { parseFleetUrl } from '../shared/fleet';
import { FleetMember } from '../server/fleet/member';
import { standIn } from '../test/helpers/fleet-sim';

const MEMBERS = Number(process.env['BENCH_MEMBERS'] ?? 200);
const ROLLOUTS = Number(process.env['BENCH_ROLLOUTS'] ?? 5);

async function metrics(endpoint: string): Promise<Record<string, number>> {
  const text = await (await fetch(`http://${endpoint}/metrics`)).text();
  const sum = (re: RegExp) =>
    text
      .split('\n')
      .filter((l) => re.test(l))
      .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return {
    requests: sum(/^grpc_server_handled_total\{/),
    puts: sum(/^etcd_mvcc_put_total /),
    txns: sum(/^etcd_mvcc_txn_total /),
    ranges: sum(/^etcd_mvcc_range_total /),
    watchEvents: sum(/^etcd_debugging_mvcc_events_total /),
    cpuSeconds: sum(/^process_cpu_seconds_total /),
    dbBytes: sum(/^etcd_mvcc_db_total_size_in_use_in_bytes /),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  let dir: string | undefined;
  let endpoint = process.env['BENCH_ETCD'];
  let pid: number | undefined;
  if (!endpoint) {
    dir = mkdtempSync(join(tmpdir(), 'lp-bench-etcd-'));
    endpoint = execFileSync('bash', [join(__dirname, '..', '..', 'scripts', 'start-etcd.sh'), dir], { encoding: 'utf8' }).trim();
    pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
  }
  const name = `bench-${process.pid}`;
  const address = parseFleetUrl(`etcd://${endpoint}/${name}`);
  const members: FleetMember[] = [];
  try {
    const joinStart = Date.now();
    for (let i = 0; i < MEMBERS; i++) {
      const { engine, pipeline } = standIn();
      const m = new FleetMember({ address, engine, pipeline, leaseTtlSec: 10, log: () => undefined });
      m.setAddress(`sim:${i}`);
      members.push(m);
    }
    const conn = (await import('../shared/fleet-store')).openFleet(address);
    for (;;) {
      const n = (await conn.ns.getAll().prefix('members/').keys()).length;
      if (n === MEMBERS) break;
      await sleep(50);
    }
    const joinMs = Date.now() - joinStart;
    conn.close();
    await sleep(1000); // let the watches settle
    console.log(`${MEMBERS} simulated members joined and registered in ${joinMs} ms (etcd ${endpoint})`);
    const times: number[] = [];
    const loads: Record<string, number>[] = [];
    for (let r = 0; r < ROLLOUTS; r++) {
      const before = await metrics(endpoint);
      const t0 = performance.now();
      const out = await applyThroughFleet(
        `etcd://${endpoint}/${name}`,
        { id: `bench-${r}`, files: { 'src/x.ts': `export const x = ${r};\n` } },
        { deadlineMs: 120_000 },
      );
      const ms = performance.now() - t0;
      if (!out.ok || out.members.length !== MEMBERS)
        throw new Error(`rollout ${r} failed: ${JSON.stringify(out.error)} (${out.members.length} members)`);
      const after = await metrics(endpoint);
      const d = Object.fromEntries(Object.keys(after).map((k) => [k, after[k]! - before[k]!]));
      d['dbBytes'] = after['dbBytes']!;
      times.push(ms);
      loads.push(d);
      console.log(
        `rollout ${r + 1}: apply → all ${MEMBERS} committed in ${ms.toFixed(0)} ms; etcd: ${d['requests']} gRPC requests, ${d['puts']} puts, ${d['txns']} txns, ${d['ranges']} ranges, ${d['watchEvents']} watch events delivered, ${(d['cpuSeconds']! * 1000).toFixed(0)} ms CPU, db in use ${(after['dbBytes']! / 1024).toFixed(0)} KiB`,
      );
      await sleep(500);
    }
    const m = (k: string) => median(loads.map((l) => l[k]!));
    console.log(
      `\nmedian of ${ROLLOUTS}: apply → all committed ${median(times).toFixed(0)} ms (min ${Math.min(...times).toFixed(0)}, max ${Math.max(...times).toFixed(0)}); per rollout etcd handled ${m('requests')} requests (${m('puts')} puts, ${m('txns')} txns, ${m('ranges')} ranges), delivered ${m('watchEvents')} watch events, used ${(m('cpuSeconds') * 1000).toFixed(0)} ms CPU${pid ? '' : ' (CPU of an etcd started elsewhere: its metrics)'}`,
    );
  } finally {
    await Promise.all(members.map((m) => m.close()));
    if (pid) {
      try {
        process.kill(pid);
      } catch {
        // already gone
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
