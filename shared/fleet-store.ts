/**
 * Opening the etcd client for a fleet, with TLS and etcd authentication taken from the environment
 * (the same variables for the agent and the CLI):
 *   LIVEPATCH_FLEET_CA             PEM CA bundle: connect with TLS and trust it
 *   LIVEPATCH_FLEET_CERT/_KEY      PEM client certificate and key (etcd's --client-cert-auth)
 *   LIVEPATCH_FLEET_USER           etcd user name (etcd auth)
 *   LIVEPATCH_FLEET_PASSWORD_FILE  file holding that user's password (never on argv or in the env itself)
 * The client is loaded lazily: commands and agents that never touch a fleet do not load gRPC.
 */
import { readFileSync } from 'node:fs';
import type { Etcd3, Namespace } from 'etcd3';
import { LivepatchError } from './errors';
import type { FleetAddress } from './fleet';

export interface FleetConnection {
  client: Etcd3;
  /** The fleet's keys (fleetKeys) relative to its prefix. */
  ns: Namespace;
  address: FleetAddress;
  close(): void;
}

function readFile(env: NodeJS.ProcessEnv, name: string): Buffer | undefined {
  const path = env[name]?.trim();
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new LivepatchError('LP_ERR_FLEET_URL', `cannot read ${name} (${path}): ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/** Open a client for `address`. Throws LP_ERR_FLEET_URL when a credential file cannot be read. */
export function openFleet(address: FleetAddress, env: NodeJS.ProcessEnv = process.env): FleetConnection {
  const ca = readFile(env, 'LIVEPATCH_FLEET_CA');
  const cert = readFile(env, 'LIVEPATCH_FLEET_CERT');
  const key = readFile(env, 'LIVEPATCH_FLEET_KEY');
  if (Boolean(cert) !== Boolean(key))
    throw new LivepatchError('LP_ERR_FLEET_URL', 'LIVEPATCH_FLEET_CERT and LIVEPATCH_FLEET_KEY go together');
  if (cert && !ca) throw new LivepatchError('LP_ERR_FLEET_URL', 'a client certificate needs TLS: set LIVEPATCH_FLEET_CA too');
  const user = env['LIVEPATCH_FLEET_USER']?.trim();
  const password = readFile(env, 'LIVEPATCH_FLEET_PASSWORD_FILE')
    ?.toString()
    .replace(/\r?\n$/, '');
  if (user && password === undefined)
    throw new LivepatchError('LP_ERR_FLEET_URL', 'LIVEPATCH_FLEET_USER needs LIVEPATCH_FLEET_PASSWORD_FILE');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Etcd3 } = require('etcd3') as typeof import('etcd3');
  const scheme = ca ? 'https' : 'http';
  const client = new Etcd3({
    hosts: address.endpoints.map((e) => `${scheme}://${e}`),
    dialTimeout: 5000,
    ...(ca ? { credentials: { rootCertificate: ca, ...(cert && key ? { certChain: cert, privateKey: key } : {}) } } : {}),
    ...(user ? { auth: { username: user, password: password! } } : {}),
  });
  return { client, ns: client.namespace(address.prefix), address, close: () => client.close() };
}

/** An etcd failure as a registry error: permission problems → LP_ERR_FLEET_DENIED, the rest unreachable. */
export function fleetError(err: unknown, what: string): LivepatchError {
  if (err instanceof LivepatchError) return err;
  const name = (err as Error)?.constructor?.name ?? '';
  const msg = String((err as Error)?.message ?? err)
    .split('\n')[0]!
    .replace(/\s*Resolution note:\s*$/, '')
    .slice(0, 300);
  if (/Permission|Authentication|InvalidAuth|UserNotFound|user name is empty|user name not found|auth token|auth: /i.test(name + ' ' + msg))
    return new LivepatchError('LP_ERR_FLEET_DENIED', `${what}: etcd refused: ${msg}`);
  return new LivepatchError('LP_ERR_FLEET_UNREACHABLE', `${what}: ${msg}`);
}
