/**
 * `livepatch token create NAME --role read|patch|admin --file FILE`: add an entry to a tokens file
 * (hashed; see shared/tokens.ts) and print the new token on stdout and nothing else, so
 * `TOKEN=$(livepatch token create ...)` works. The notes go to stderr. Offline: no agent involved.
 */
import { Option, type Command } from 'commander';
import { LivepatchError, ROLES, addToken, type Role } from '../../../shared';
import { type Finish } from '../options';
import { note, runCommand } from '../output';

/** Register `token create` on `program`. */
export function registerToken(program: Command, finish: Finish): void {
  const token = program.command('token').description('manage the tokens file read by the agent');
  token
    .command('create')
    .description('add a token to FILE and print it (once) on stdout')
    .argument('<name>', 'who the token is for (letters, digits, _ . @ -)')
    .addOption(new Option('--role <role>', 'what the token may do').choices(ROLES).makeOptionMandatory())
    .requiredOption('--file <file>', 'tokens file (created with mode 0600 if missing)')
    .action(async (name: string, o: { role: Role; file: string }) => {
      finish(
        await runCommand(false, async () => {
          let created: ReturnType<typeof addToken>;
          try {
            created = addToken(o.file, name, o.role);
          } catch (e) {
            throw new LivepatchError('LP_ERR_CLI_USAGE', (e as Error).message);
          }
          process.stdout.write(created.token + '\n');
          note(`added token "${name}" (id ${created.entry.id}, role ${o.role}) to ${o.file}; it is shown only this once`);
          return 0;
        }),
      );
    });
}
