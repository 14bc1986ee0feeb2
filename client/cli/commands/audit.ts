/**
 * `livepatch audit verify HOST:PORT`: ask the agent to verify its audit log's hash chain (op
 * `audit-verify`, admin role). Exit 0 when the chain is intact, 1 (LP_ERR_AUDIT_BROKEN) when not.
 */
import type { Command } from 'commander';
import { LivepatchError } from '../../../shared';
import { addCommonOptions, commonFrom, withAgent, type Finish } from '../options';
import { note, printJson, runCommand, wireOf } from '../output';

/** Register `audit verify` on `program`. */
export function registerAudit(program: Command, finish: Finish): void {
  const audit = program.command('audit').description("the agent's audit log");
  addCommonOptions(
    audit
      .command('verify')
      .description("verify the hash chain of the agent's audit log")
      .argument('<target>', 'agent address: host:port or unix:/path'),
  ).action(async (target: string, o: Record<string, unknown>) => {
    const opts = commonFrom(o);
    finish(
      await runCommand(Boolean(opts.json), async () => {
        const r = await withAgent(target, opts, (c) => c.request('audit-verify', {}));
        if (r.ok) {
          if (opts.json) printJson(r);
          else process.stdout.write(`audit log intact: ${r.records} record(s)\n`);
          return 0;
        }
        const err = new LivepatchError(
          'LP_ERR_AUDIT_BROKEN',
          `audit log chain broken${r.brokenAt !== undefined ? ` at line ${r.brokenAt}` : ''}${r.reason ? `: ${r.reason}` : ''}`,
        );
        note(err.message);
        if (opts.json) printJson({ ...r, error: wireOf(err) });
        return err.exitCode;
      }),
    );
  });
}
