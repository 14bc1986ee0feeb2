/**
 * Pricing: turns order lines into a quote (subtotal, discounts, tax, total). All amounts in cents.
 */
import { findProduct } from './catalog';
import { discountsFor, type Discount, type PricedLine } from './discounts';

export interface OrderLine {
  sku: string;
  qty: number;
}

export interface Quote {
  lines: PricedLine[];
  subtotal: number;
  discounts: Discount[];
  tax: number;
  total: number;
}

/** Sales tax rate. */
export const TAX_RATE = 0.2;

/** Price each line from the catalogue; throws on an unknown SKU or a bad quantity. */
export function priceLines(lines: readonly OrderLine[]): PricedLine[] {
  return lines.map(({ sku, qty }) => {
    const product = findProduct(sku);
    if (!product) throw new RangeError(`unknown sku "${sku}"`);
    if (!Number.isInteger(qty) || qty < 1 || qty > 1000) throw new RangeError(`bad quantity ${qty} for "${sku}"`);
    return { sku, qty, unit: product.price, amount: product.price * qty };
  });
}

/** The full quote for an order. */
export function quote(lines: readonly OrderLine[]): Quote {
  const priced = priceLines(lines);
  const subtotal = priced.reduce((s, l) => s + l.amount, 0);
  const discounts = discountsFor(priced);
  const off = discounts.reduce((s, d) => s + d.amount, 0);
  // Tax is charged on the subtotal.
  const tax = Math.round(subtotal * TAX_RATE);
  return { lines: priced, subtotal, discounts, tax, total: subtotal - off + tax };
}

/** Cents → "12.34". */
export function formatCents(cents: number): string {
  const sign = cents < 0 ? '-' : '';
  const abs = Math.abs(cents);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
}
