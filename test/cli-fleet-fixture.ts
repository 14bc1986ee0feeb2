/**
 * Two agents for the fleet tests: host A runs the basic fixture; host B runs a different deployment
 * whose rates.rate() takes a second argument, so a patch written against A's signature does not
 * type-check on B. Shared by cli-fleet.test.ts and cli-ci-recipe.test.ts.
 */
import { createProject, createTokens, startApp, type AppProcess, type Project, type Tokens } from './helpers/project';

// Host B runs an older rates.ts whose rate() takes a second argument; the fixture's quote.ts is
// adjusted to match, so B is a healthy deployment of a different version.
export const RATES_B = `export const RATES_LABEL = 'rates-b';

export function rate(currency: string, day: number): number {
  return currency === 'EUR' ? 1.1 + day * 0 : 1;
}

export function tag(): string {
  return 'A1';
}
`;
export const QUOTE_B = `import { rate } from './rates';

export function quote(currency: string, amount: number): number {
  return Math.round(amount * rate(currency, 0) * 100) / 100;
}

export function tag(): string {
  return 'B1';
}

export class Counter {
  count = 0;
  hit(): number {
    this.count += 1;
    return this.count;
  }
  label(): string {
    return \`v1:\${this.count}\`;
  }
}
`;
// Written against host A's rates.ts: rate(currency) with one argument.
export const QUOTE_PATCH = QUOTE_B.replace('rate(currency, 0)', 'rate(currency)').replace("'B1'", "'B2'");
// Type-checks against both signatures: the cast is valid for rate(currency) and rate(currency, day).
export const BOTH_PATCH = QUOTE_B.replace('rate(currency, 0)', '(rate as (c: string, day?: number) => number)(currency, 0)').replace(
  "'B1'",
  "'B2'",
);

/** One host: its project copy and its running app. */
export interface Host {
  project: Project;
  app: AppProcess;
  agent: string;
}

export interface Fleet {
  a: Host;
  b: Host;
  tokens: Tokens;
  stop(): Promise<void>;
}

/** Build both projects and start both apps with agents sharing one tokens file. */
export async function startFleet(): Promise<Fleet> {
  const pa = createProject();
  const pb = createProject();
  pb.write('src/rates.ts', RATES_B);
  pb.write('src/quote.ts', QUOTE_B);
  pb.build();
  const tokens = createTokens(pa.root);
  const apps = await Promise.allSettled([pa, pb].map((p) => startApp(p.root, { env: { LIVEPATCH_TOKENS: tokens.file } })));
  const stop = async () => {
    for (const r of apps) if (r.status === 'fulfilled') await r.value.stop();
    pa.cleanup();
    pb.cleanup();
  };
  if (apps[0]!.status === 'rejected' || apps[1]!.status === 'rejected') {
    await stop();
    throw apps.find((r) => r.status === 'rejected')!.reason;
  }
  const [appA, appB] = apps.map((r) => (r as PromiseFulfilledResult<AppProcess>).value) as [AppProcess, AppProcess];
  return { a: { project: pa, app: appA, agent: appA.agent! }, b: { project: pb, app: appB, agent: appB.agent! }, tokens, stop };
}

/** GET /mix's `b` (quote.tag()) once more if a kept-alive socket was closed under the request. */
export async function quoteTag(app: AppProcess): Promise<string> {
  try {
    return (await app.get('/mix')).b;
  } catch {
    return (await app.get('/mix')).b;
  }
}
