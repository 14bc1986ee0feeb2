/**
 * Demo runner, part 2: the scripted tour used when there is no terminal (CI, pipes, tests).
 *
 * Each step prints what it does, runs the real `livepatch` CLI (or an HTTP request to the shop) and
 * checks the outcome; the first failing step ends the tour with an error. The shop's behaviour is
 * checked before the patch, after it, and after the rollback, so the tour proves the patch took
 * effect and was undone; a second patch of the inventory module proves its state (`keep`) survives.
 */
import { join, relative } from 'node:path';
import { run, type RunResult } from '../testkit/launch';
import { CLI, type ShopProcess } from './demo-app';

/** The sample order: 12 mugs. Totals before/after the sample patch are printed and compared. */
const ORDER = 'mug:12';

export interface TourOptions {
  shop: ShopProcess;
  /** The development token (passed to the CLI in LIVEPATCH_TOKEN, never on the command line). */
  token: string;
  /** Directory holding the patch set; module ids are paths relative to it (e.g. src/pricing.ts). */
  patchDir: string;
  print: (line: string) => void;
}

class StepFailed extends Error {}

/** Run the tour; resolves when every step passed, rejects with the failing step's reason. */
export async function runTour(o: TourOptions): Promise<void> {
  const { shop, print } = o;
  let n = 0;
  const step = (title: string) => print(`\n[${++n}] ${title}`);
  const indent = (text: string) =>
    text
      .trimEnd()
      .split('\n')
      .map((l) => `    ${l}`)
      .join('\n');

  const cli = async (args: string[], expectCode = 0): Promise<string> => {
    print(`$ livepatch ${args.map(shellQuote).join(' ')}`);
    const r = await runCli(args, o.token, shop.root);
    if (r.stdout.trim()) print(indent(r.stdout));
    if (r.stderr.trim()) print(indent(r.stderr));
    if (r.code !== expectCode) throw new StepFailed(`livepatch ${args[0]} exited ${r.code} (expected ${expectCode})`);
    return r.stdout;
  };
  const get = async (path: string, method: 'GET' | 'POST' = 'GET'): Promise<any> => {
    print(`$ curl${method === 'POST' ? ' -X POST' : ''} 'http://127.0.0.1:${shop.httpPort}${path}'`);
    const r = await shop.http(method, path);
    if (r.status !== 200) throw new StepFailed(`${method} ${path} answered ${r.status}: ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const showQuote = (q: any) => {
    const rules = (q.discounts as { rule: string; amount: number }[]).map((d) => `${d.rule} -${cents(d.amount)}`).join(', ') || 'none';
    print(indent(`subtotal ${cents(q.subtotal)}  discounts [${rules}]  tax ${cents(q.tax)}  total ${cents(q.total)}`));
  };

  step('The live modules of the running shop (all at version 1, generation 1)');
  const before = await cli(['versions', shop.agent]);
  if (!before.includes('src/pricing.ts') || !before.includes('src/discounts.ts'))
    throw new StepFailed('versions does not list src/pricing.ts and src/discounts.ts');

  step(`Current behaviour: a quote for ${ORDER}, and a cart opened now (a long-lived object)`);
  const q1 = await get(`/quote?items=${ORDER}`);
  showQuote(q1);
  const cart = await get('/carts', 'POST');
  await get(`/carts/${cart.id}/items?sku=mug&qty=12`, 'POST');
  print(indent(`cart ${cart.id} holds 12 mugs`));

  const rel = relative(shop.root, o.patchDir);
  const patchArg = rel.startsWith('..') ? o.patchDir : rel || '.';
  step('Apply the sample patch set: a tax fix in src/pricing.ts and a new bulk discount in src/discounts.ts');
  await cli(['apply', shop.agent, patchArg, '--root', patchArg, '-m', 'pricing: tax after discounts; discounts: bulk-10']);

  step('Versions now: the two patched modules are at version 2');
  await cli(['versions', shop.agent]);

  step('Changed behaviour, same process, no restart: the quote and the cart opened before the patch');
  const q2 = await get(`/quote?items=${ORDER}`);
  showQuote(q2);
  const c2 = await get(`/carts/${cart.id}`);
  print(indent(`cart ${cart.id} still holds ${c2.lines[0]?.qty ?? 0} mugs; its total is now ${cents(c2.quote.total)}`));
  if (q2.total === q1.total) throw new StepFailed(`the quote did not change after the patch (${cents(q1.total)})`);
  if (!q2.discounts.some((d: { rule: string }) => d.rule === 'bulk-10')) throw new StepFailed('the new bulk-10 discount is not applied');
  if (c2.quote.total !== q2.total) throw new StepFailed('the cart opened before the patch does not use the patched pricing');
  print(`    total ${cents(q1.total)} -> ${cents(q2.total)}`);

  step('Check the cart out: one async request through pricing, inventory (awaited) and payments (awaited)');
  const stock0 = await get('/stock');
  const order = await get(`/carts/${cart.id}/checkout`, 'POST');
  const stock1 = await get('/stock');
  print(indent(`order #${order.id}: total ${cents(order.total)}, payment ${order.payment}; mugs in stock ${stock0.mug} -> ${stock1.mug}`));
  if (order.total !== q2.total) throw new StepFailed(`the order total ${cents(order.total)} is not the patched price ${cents(q2.total)}`);
  if (stock1.mug !== stock0.mug - 12) throw new StepFailed('the checkout did not take 12 mugs from stock');

  step('Roll back to the previous generation');
  await cli(['rollback', shop.agent]);

  step('Behaviour after the rollback: back to the original quote');
  const q3 = await get(`/quote?items=${ORDER}`);
  showQuote(q3);
  if (q3.total !== q1.total) throw new StepFailed(`after rollback the total is ${cents(q3.total)}, expected ${cents(q1.total)}`);

  const reorder = join(shop.root, 'patches', 'reorder-report');
  step('Patch src/inventory.ts (a reorder status in the stock report): the stock the order took is kept (keep)');
  await cli([
    'apply',
    shop.agent,
    relative(shop.root, reorder),
    '--root',
    relative(shop.root, reorder),
    '-m',
    'inventory: reorder status in the stock report',
  ]);
  const stock2 = await get('/stock');
  print(indent(`mug: ${JSON.stringify(stock2.mug)}`));
  if (stock2.mug?.units !== stock1.mug)
    throw new StepFailed(`inventory state was not kept across the patch (${JSON.stringify(stock2.mug)}, expected ${stock1.mug} units)`);
  if (stock2.mug.status !== 'reorder') throw new StepFailed('the patched stock report has no reorder status');

  step('History: deploy, patch, rollback, patch');
  await cli(['history', shop.agent]);
}

/** Quote an argument for display the way a shell user would type it. */
function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

function cents(c: number): string {
  return (c / 100).toFixed(2);
}

function runCli(args: string[], token: string, cwd: string): Promise<RunResult> {
  return run({ args: [CLI, ...args], cwd, env: { LIVEPATCH_TOKEN: token }, timeoutMs: 120_000 });
}

export { StepFailed };
