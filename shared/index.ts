/** Re-exports only: the protocol shared by the agent (server/) and the clients (client/). */
export * from './errors';
export * from './version';
export * from './auth';
export * from './patch';
export * from './ops';
export * from './health';
export * from './messages';
export * from './target';
export * from './tokens';
export * from './signing';
export * from './hash';
