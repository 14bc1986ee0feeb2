/**
 * Per-instance agent addresses, for process managers (pm2 and the like) that own the primary and run
 * each app instance with its own agent. `LIVEPATCH_LISTEN=127.0.0.1:12400+` listens on port
 * 12400 + instance; `{instance}` anywhere in LIVEPATCH_LISTEN, LIVEPATCH_AUDIT or LIVEPATCH_JOURNAL
 * is replaced by the instance number (e.g. `unix:/run/app/lp-{instance}.sock`). The instance number is
 * NODE_APP_INSTANCE (pm2 sets it), else pm_id, else the cluster worker id, else 0.
 */
import cluster from 'node:cluster';

const PLUS = /^(.*):(\d+)\+$/;

/** Whether `listen` names a different address per instance. */
export function hasInstancePattern(listen: string | undefined): boolean {
  return listen !== undefined && (listen.includes('{instance}') || PLUS.test(listen.trim()));
}

/** This process's instance number (see the file header). */
export function instanceNumber(env: NodeJS.ProcessEnv): number {
  for (const v of [env['NODE_APP_INSTANCE'], env['pm_id']]) {
    if (v !== undefined && /^\d+$/.test(v.trim())) return Number(v.trim());
  }
  return cluster.worker?.id ?? 0;
}

/** `env` with the per-instance patterns expanded (unchanged when there are none). */
export function instanceEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const listen = env['LIVEPATCH_LISTEN']?.trim();
  const patterned = ['LIVEPATCH_LISTEN', 'LIVEPATCH_AUDIT', 'LIVEPATCH_JOURNAL'].some((k) => env[k]?.includes('{instance}'));
  if (!patterned && !(listen && PLUS.test(listen))) return env;
  const n = instanceNumber(env);
  const out: NodeJS.ProcessEnv = { ...env };
  for (const k of ['LIVEPATCH_LISTEN', 'LIVEPATCH_AUDIT', 'LIVEPATCH_JOURNAL']) {
    if (out[k]) out[k] = out[k]!.split('{instance}').join(String(n));
  }
  const m = PLUS.exec(out['LIVEPATCH_LISTEN']?.trim() ?? '');
  if (m) {
    const port = Number(m[2]) + n;
    if (port > 65535) throw new Error(`LIVEPATCH_LISTEN ${listen}: port ${port} for instance ${n} is out of range`);
    out['LIVEPATCH_LISTEN'] = `${m[1]}:${port}`;
  }
  return out;
}
