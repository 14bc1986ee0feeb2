/**
 * Preload entry: `node -r livepatch/register app.js`.
 *
 * Installs the engine before any app module loads (so the app's modules become live modules), then
 * starts the agent from the environment (LIVEPATCH_LISTEN, LIVEPATCH_TOKENS, ...). Neither step may
 * throw into the host: a misconfigured agent is reported on stderr and the app runs unpatched-but-live.
 */
import { installFromEnv } from './engine';
import { startAgentFromEnv } from './agent';

installFromEnv();
startAgentFromEnv();
