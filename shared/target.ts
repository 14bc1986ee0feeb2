/**
 * Agent addresses as written by users: `host:port`, `[::1]:port`, or `unix:/path/to.sock`.
 */
export type Target = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export function parseTarget(s: string): Target | undefined {
  if (s.startsWith('unix:')) {
    const path = s.slice(5);
    return path ? { kind: 'unix', path } : undefined;
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s/]+)):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { kind: 'tcp', host: m[1] ?? m[2]!, port };
}

export function formatTarget(t: Target): string {
  return t.kind === 'unix' ? `unix:${t.path}` : t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|::ffff:127\.\d+\.\d+\.\d+)$/;
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.test(host);
}
