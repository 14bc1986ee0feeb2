/**
 * Entry point: start the HTTP server, run the periodic restock job, stop cleanly on SIGTERM/SIGINT.
 * Prints `app listening on PORT` once ready (the demo runner and tests wait for that line).
 */
import { pin } from 'livepatch';
import * as inventory from './inventory';
import { startServer } from './server';

// The "nightly delivery": rare enough that stock taken by orders stays visible for a while.
const RESTOCK_MS = 10 * 60_000;

async function main(): Promise<void> {
  const server = await startServer(Number(process.env['PORT'] ?? 0));
  const addr = server.address();
  console.log(`app listening on ${typeof addr === 'object' && addr ? addr.port : 0}`);
  // Background work is not an HTTP request, so pin it explicitly: one restock runs on one generation.
  const timer = setInterval(() => pin(() => inventory.restock()), RESTOCK_MS);
  timer.unref();
  const stop = () => {
    clearInterval(timer);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((e: unknown) => {
  console.error('shop: failed to start:', e instanceof Error ? e.message : e);
  process.exit(1);
});
