/**
 * `npm run demo`: build the example shop, start it with the agent and a development token, then
 * either open `livepatch attach` on it (interactive terminal) or run the scripted tour (no terminal:
 * stdout is not a TTY, or CI is set). The shop is always stopped at the end; the exit code is 0 only
 * when every step succeeded.
 *
 * Environment: LIVEPATCH_DEMO_LISTEN (agent address, default 127.0.0.1:12345), LIVEPATCH_DEMO_PORT
 * (shop HTTP port, default any free port), LIVEPATCH_DEMO_PATCH (patch set directory, default
 * examples/shop/patches/bulk-discount), LIVEPATCH_DEMO_TOUR=1 (force the tour).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CLI, createDevToken, prepareShop, startShop, type ShopProcess } from './demo-app';
import { runTour, StepFailed } from './demo-tour';

const print = (line: string) => process.stdout.write(line + '\n');

function interactive(): boolean {
  const ci = process.env['CI'];
  if (ci && ci !== 'false' && ci !== '0') return false;
  if (process.env['LIVEPATCH_DEMO_TOUR'] === '1') return false;
  return Boolean(process.stdout.isTTY && process.stdin.isTTY);
}

/** Run `livepatch attach` in this terminal; resolves with its exit code. */
function attach(shop: ShopProcess, tokenFile: string): Promise<number> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, 'attach', shop.agent, '--token-file', tokenFile], { stdio: 'inherit' });
    child.on('error', () => done(1));
    child.on('exit', (code, signal) => done(code ?? (signal ? 1 : 0)));
  });
}

async function main(): Promise<number> {
  const tty = interactive();
  const state = mkdtempSync(join(tmpdir(), 'livepatch-demo-'));
  let shop: ShopProcess | undefined;
  try {
    print('livepatch demo: building a copy of examples/shop');
    const root = prepareShop(state);
    const { tokensFile, token, tokenFile } = createDevToken(state);
    print(`development token (admin) created in ${tokensFile}`);
    const listen = process.env['LIVEPATCH_DEMO_LISTEN'] || '127.0.0.1:12345';
    const port = Number(process.env['LIVEPATCH_DEMO_PORT'] || 0);
    const logFile = tty ? join(state, 'shop.log') : undefined;
    shop = await startShop({ root, listen, tokensFile, stateDir: state, port, ...(logFile ? { logFile } : {}) });
    const started = shop;
    // Ctrl-C or a kill of the runner must not leave the shop running.
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        started.child.kill('SIGKILL');
        rmSync(state, { recursive: true, force: true });
        process.exit(130);
      });
    }
    print(`shop (pid ${shop.child.pid}) serving http://127.0.0.1:${shop.httpPort}, agent on ${shop.agent}`);
    if (tty) {
      print(`shop output: ${logFile}`);
      print(`from another terminal:  LIVEPATCH_TOKEN=$(cat ${tokenFile}) node ${CLI} versions ${shop.agent}`);
      print('opening livepatch attach (q to quit)...');
      return await attach(shop, tokenFile);
    }
    const patchDir = resolve(process.env['LIVEPATCH_DEMO_PATCH'] || join(root, 'patches', 'bulk-discount'));
    await runTour({ shop, token, patchDir, print });
    print('\ndemo tour finished: every step passed');
    return 0;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    print(`\ndemo failed: ${why}`);
    if (shop && !(e instanceof StepFailed)) print(shop.output());
    return 1;
  } finally {
    if (shop) {
      await shop.stop();
      print(`shop (pid ${shop.child.pid}) stopped`);
    }
    rmSync(state, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
