/**
 * The package entry `livepatch`: the agent API for apps that start it themselves, and the helpers
 * live modules use (`pin`, `keep`).
 */
export { install, getEngine, pin, keep, type InstallOptions, type KeepOptions } from './engine';
export { startAgent, type AgentOptions, type Agent } from './agent';
export type { Engine } from './engine/types';
