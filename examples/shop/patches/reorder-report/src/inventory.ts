/**
 * Inventory: units on hand per SKU, and reservations taken by checkouts.
 *
 * The stock map is held with `keep`, so it survives a patch of this module: a new version of
 * inventory.ts receives the same Map instead of starting again from the initial stock.
 */
import { keep } from 'livepatch';
import { listProducts } from './catalog';

const INITIAL_UNITS = 500;
/** New: below this many units a SKU should be reordered. */
const REORDER_POINT = 490;

const stock = keep('stock', () => new Map<string, number>(listProducts().map((p) => [p.sku, INITIAL_UNITS])));

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Units on hand for a SKU (0 when unknown). */
export function available(sku: string): number {
  return stock.get(sku) ?? 0;
}

/** A snapshot of every SKU's units on hand, now with its reorder status. */
export function snapshot(): Record<string, { units: number; status: 'ok' | 'reorder' | 'out' }> {
  return Object.fromEntries(
    [...stock].map(([sku, units]) => [sku, { units, status: units === 0 ? 'out' : units < REORDER_POINT ? 'reorder' : 'ok' }]),
  );
}

/**
 * Take `qty` units of each line, all or nothing. Asynchronous like a real stock service: it waits a
 * moment (a warehouse round trip) before deciding.
 */
export async function reserve(lines: readonly { sku: string; qty: number }[]): Promise<boolean> {
  await sleep(2);
  if (!lines.every((l) => available(l.sku) >= l.qty)) return false;
  for (const l of lines) stock.set(l.sku, available(l.sku) - l.qty);
  return true;
}

/** Put units back (a failed payment, a cancelled order). */
export function release(lines: readonly { sku: string; qty: number }[]): void {
  for (const l of lines) stock.set(l.sku, available(l.sku) + l.qty);
}

/** Top every SKU back up to the initial level (the nightly delivery). */
export function restock(): void {
  for (const p of listProducts()) if (available(p.sku) < INITIAL_UNITS) stock.set(p.sku, INITIAL_UNITS);
}
