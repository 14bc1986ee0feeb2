/**
 * Preload that installs only the engine (no agent): `node -r livepatch/dist/server/engine/register-engine-only app.js`.
 * Useful for tests and benchmarks that drive the engine in-process.
 */
import { installFromEnv } from './index';

installFromEnv();
