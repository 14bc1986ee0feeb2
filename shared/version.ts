/**
 * Protocol version and the compatibility rule.
 *
 * The protocol version is one integer. A client speaks to an agent only when both use the same major
 * protocol version; the agent announces its version in `hello` and the client refuses with
 * LP_ERR_PROTO_VERSION otherwise.
 */
export const PROTOCOL_VERSION = 1;

export function isCompatible(agentProtocol: number): boolean {
  return agentProtocol === PROTOCOL_VERSION;
}

/** The package version, read once from package.json (works from source and from dist/). */
export const PACKAGE_VERSION: string = (() => {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const pkg = require(rel) as { name?: string; version?: string };
      if (pkg.name === 'livepatch' && pkg.version) return pkg.version;
    } catch {
      /* try the next location */
    }
  }
  return '0.0.0';
})();
