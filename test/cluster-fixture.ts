/**
 * Test helpers for cluster mode: boot the cluster fixture (a primary forking N workers, all with
 * `-r livepatch/register`), patch sources for its two modules, and a keep-alive load loop that
 * records every response.
 */
import * as http from 'node:http';
import type { PatchSet } from '../shared';
import { bootAgentApp, type AgentApp } from './helpers/raw-client';

export type ClusterApp = AgentApp;

/** Start the cluster fixture with `workers` workers; `$ROOT` in an env value is the project root. */
export function bootCluster(workers = 2, env: Record<string, string | undefined> = {}, waitAgent = true): Promise<ClusterApp> {
  return bootAgentApp({ WORKERS: String(workers), ...env }, { fixture: 'cluster', waitAgent });
}

/** rates.ts with tag() returning `a` (and an optional top-level statement). */
export function ratesSource(a: string, top = ''): string {
  return `${top}export const RATES_LABEL = 'rates-${a}';\nexport function rate(currency: string): number {\n  return currency === 'EUR' ? 1.1 : 1;\n}\nexport function tag(): string {\n  return '${a}';\n}\n`;
}

/** quote.ts with tag() returning `b`. */
export function quoteSource(b: string): string {
  return `import { rate } from './rates';\n\nexport function quote(currency: string, amount: number): number {\n  return Math.round(amount * rate(currency) * 100) / 100;\n}\n\nexport function tag(): string {\n  return '${b}';\n}\n\nexport class Counter {\n  count = 0;\n  hit(): number {\n    this.count += 1;\n    return this.count;\n  }\n  label(): string {\n    return \`v1:\${this.count}\`;\n  }\n}\n`;
}

/** A two-module patch: rates.tag() → a, quote.tag() → b. */
export function pairPatch(a: string, b: string, id?: string): PatchSet {
  return { ...(id ? { id } : {}), message: `pair ${a}/${b}`, files: { 'src/rates.ts': ratesSource(a), 'src/quote.ts': quoteSource(b) } };
}

/** GET over a keep-alive agent; parsed JSON or an error string. */
export function get(agent: http.Agent, port: number, path: string): Promise<any> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 ? JSON.parse(body) : { error: `status ${res.statusCode}` });
        } catch {
          resolve({ error: `bad body ${body.slice(0, 80)}` });
        }
      });
    });
    req.on('error', (e) => resolve({ error: e.message }));
    // A request never answered is a failure to report, not a hang.
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
  });
}

/** Load on `path` (keep-alive by default) from `concurrency` loops until `stop()`; resolves with every response. */
export function load(port: number, path: string, concurrency = 8, keepAlive = true): { stop(): Promise<any[]> } {
  const agent = new http.Agent({ keepAlive, maxSockets: concurrency });
  const results: any[] = [];
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) results.push(await get(agent, port, path));
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return results;
    },
  };
}
