/**
 * Preload entry: `node -r livepatch/register app.js`.
 *
 * Installs the engine before any app module loads (so the app's modules become live modules), then
 * starts the agent from the environment (LIVEPATCH_LISTEN, LIVEPATCH_TOKENS, ...). Neither step may
 * throw into the host: a misconfigured agent is reported on stderr and the app runs unpatched-but-live.
 * In a `cluster` app the primary runs the agent and the workers follow it (server/cluster).
 */
import { installFromEnv } from './engine';
import { startFromEnv } from './cluster';

installFromEnv();
// Plain apps get the ordinary agent; cluster primaries and workers their cluster roles (server/cluster).
startFromEnv();
