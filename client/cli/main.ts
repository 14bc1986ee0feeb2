#!/usr/bin/env node
/** The `livepatch` command line: see client/cli/commands/ (one file per command). */
import { installPipeGuard } from './output';
import { main } from './program';

installPipeGuard();

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`livepatch: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
