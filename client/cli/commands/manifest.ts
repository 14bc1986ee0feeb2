/**
 * `livepatch manifest [--root DIR] [--project FILE] [--out FILE]`: write the build manifest
 * (livepatch.manifest.json, shared/manifest.ts) at build time, after tsc. Shipped next to `dist/`, it
 * lets an agent without TypeScript sources accept patches type-checked on a client (--check-here).
 * Offline: no agent involved. The compiler is loaded only by this command.
 */
import type { Command } from 'commander';
import { type Finish } from '../options';
import { note, printJson, runCommand } from '../output';

/** Register `manifest` on `program`. */
export function registerManifest(program: Command, finish: Finish): void {
  program
    .command('manifest')
    .description(
      'write the build manifest (module ids → source hashes and compiled files) that lets an agent without sources accept client-checked patches',
    )
    .option('--root <dir>', 'project root (default: current directory)')
    .option('--project <file>', 'tsconfig (default: <root>/tsconfig.json)')
    .option('--out <file>', 'where to write it (default: <root>/livepatch.manifest.json, where the agent reads it)')
    .option('--json', 'print only JSON on stdout (errors too)')
    .action(async (o: { root?: string; project?: string; out?: string; json?: boolean }) => {
      finish(
        await runCommand(Boolean(o.json), async () => {
          // Loaded here, not at start-up: it brings in the TypeScript compiler.
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          const mod = require('../../build-manifest') as typeof import('../../build-manifest');
          const r = mod.writeManifest(o.root ?? process.cwd(), {
            ...(o.project ? { project: o.project } : {}),
            ...(o.out ? { out: o.out } : {}),
          });
          const n = Object.keys(r.manifest.modules).length;
          if (r.notBuilt.length > 0)
            note(
              `${r.notBuilt.length} module(s) have no compiled file yet (run it after the build): ${r.notBuilt.slice(0, 5).join(', ')}${r.notBuilt.length > 5 ? ', …' : ''}`,
            );
          if (o.json)
            printJson({ file: r.file, modules: n, ...(r.manifest.commit ? { commit: r.manifest.commit } : {}), notBuilt: r.notBuilt });
          else
            process.stdout.write(
              `wrote ${r.file}: ${n} module(s)${r.manifest.commit ? ` at commit ${r.manifest.commit.slice(0, 12)}` : ''}\n`,
            );
          return 0;
        }),
      );
    });
}
