/** The agent's public API (package entry `livepatch`). */
export {};
