/** Preload entry `livepatch/register`. */
export {};
