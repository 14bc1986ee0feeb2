/**
 * Read-only commands: `status`, `versions`, `show`, `history`. Each is one op; all work with a read
 * token. Human output is an aligned table or key/value block; --json prints the op result unchanged
 * (versions and history as arrays), which is the shape scripts rely on.
 */
import type { Command } from 'commander';
import { formatHistory, formatStatus, formatVersions } from '../../format';
import { addCommonOptions, commonFrom, parseGeneration, withAgent, type Finish } from '../options';
import { printJson, runCommand } from '../output';
import { isFleetUrl } from '../../../shared/fleet';
import { fleetHistoryCommand, fleetStatusCommand } from './fleet-etcd';

/** Register status, versions, show and history on `program`. */
export function registerInspect(program: Command, finish: Finish): void {
  addCommonOptions(
    program
      .command('status')
      .description('agent and protocol version, pid, uptime, generations with in-flight counts, modules, drift')
      .argument('<target>', 'agent address: host:port or unix:/path; or a fleet: etcd://HOST:PORT/NAME'),
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    if (isFleetUrl(target)) return finish(await fleetStatusCommand(target, Boolean(opts.json)));
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const s = await withAgent(target, opts, (c) => c.request('status', {}));
        if (opts.json) printJson(s);
        else process.stdout.write(formatStatus(s));
        return 0;
      }),
    );
  });

  addCommonOptions(
    program
      .command('versions')
      .description("one row per live module: version, generation that introduced it, hash, patched; then the generation's health")
      .argument('<target>', 'agent address: host:port or unix:/path')
      .option('--generation <n>', 'as of generation N (default: current)', parseGeneration),
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    const generation = o['generation'] as number | undefined;
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const v = await withAgent(target, opts, (c) => c.request('versions', generation !== undefined ? { generation } : {}));
        if (opts.json) printJson(v);
        else process.stdout.write(formatVersions(v, generation));
        return 0;
      }),
    );
  });

  addCommonOptions(
    program
      .command('show')
      .description('print the live TypeScript source of a module')
      .argument('<target>', 'agent address: host:port or unix:/path')
      .argument('<module>', 'module id, e.g. src/rates.ts')
      .option('--generation <n>', 'as of generation N (default: current)', parseGeneration),
  ).action(async (target: string, module: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    const generation = o['generation'] as number | undefined;
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const s = await withAgent(target, opts, (c) =>
          c.request('source', { module, ...(generation !== undefined ? { generation } : {}) }),
        );
        if (opts.json) printJson(s);
        else process.stdout.write(s.source);
        return 0;
      }),
    );
  });

  addCommonOptions(
    program
      .command('history')
      .description('generations: who, when, message, modules changed')
      .argument('<target>', 'agent address: host:port or unix:/path; or a fleet: etcd://HOST:PORT/NAME')
      .option('--limit <n>', 'at most N generations, newest first', parseGeneration),
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    if (isFleetUrl(target)) return finish(await fleetHistoryCommand(target, Boolean(opts.json), o['limit'] as number | undefined));
    const limit = o['limit'] as number | undefined;
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const h = await withAgent(target, opts, (c) => c.request('history', limit !== undefined ? { limit } : {}));
        if (opts.json) printJson(h.generations);
        else process.stdout.write(formatHistory(h.generations, h.quarantined));
        return 0;
      }),
    );
  });
}
