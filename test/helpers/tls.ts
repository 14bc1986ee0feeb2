/**
 * A throwaway self-signed certificate for tests that serve TLS on loopback (the agent's wss://, a
 * private etcd): an EC P-256 key and a one-day certificate for 127.0.0.1, made with openssl.
 */
import { execFileSync } from 'node:child_process';

/** Write `key` and `cert` (PEM); the certificate is its own CA. Throws with openssl's message on failure. */
export function selfSignedCert(key: string, cert: string, commonName = '127.0.0.1'): void {
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert];
  execFileSync('openssl', [...args, '-days', '1', '-subj', `/CN=${commonName}`, '-addext', 'subjectAltName=IP:127.0.0.1'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}
