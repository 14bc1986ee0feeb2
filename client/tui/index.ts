/**
 * `livepatch attach HOST:PORT`: the terminal UI. Entry point called by the CLI (client/cli/commands/
 * delegated.ts). The first connection must succeed (its LivepatchError goes back to the CLI, which
 * maps it to an exit code); later drops are shown on screen and reconnected.
 */
import { connectFromOptions, type CommonOptions } from '../cli/options';
import { formatTarget, parseTarget } from '../../shared';
import { TuiApp } from './app';

/** Run the TUI until the user quits; resolves with the exit code (0). */
export async function runAttach(target: string, opts: CommonOptions): Promise<number> {
  const parsed = parseTarget(target);
  const app = new TuiApp(parsed ? formatTarget(parsed) : target, () => connectFromOptions(target, opts));
  await app.start();
  const stop = () => app.stop();
  process.once('SIGTERM', stop);
  process.once('SIGHUP', stop);
  try {
    await app.done;
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGHUP', stop);
  }
  return 0;
}
