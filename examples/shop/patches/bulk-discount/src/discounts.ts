/**
 * Discount rules. Each rule looks at the priced lines of an order and may grant an amount off.
 * Rules are pure: the same lines always give the same discounts.
 */

export interface PricedLine {
  sku: string;
  qty: number;
  /** Unit price in cents. */
  unit: number;
  /** unit × qty, in cents. */
  amount: number;
}

export interface Discount {
  rule: string;
  /** Cents off (positive). */
  amount: number;
}

type Rule = (lines: readonly PricedLine[]) => Discount | undefined;

/** 5 % off orders of 100.00 or more. */
const bigBasket: Rule = (lines) => {
  const subtotal = lines.reduce((s, l) => s + l.amount, 0);
  return subtotal >= 10000 ? { rule: 'big-basket-5', amount: Math.round(subtotal * 0.05) } : undefined;
};

/** New: 10 % off every line of 10 units or more. */
const bulk: Rule = (lines) => {
  const off = lines.filter((l) => l.qty >= 10).reduce((s, l) => s + Math.round(l.amount * 0.1), 0);
  return off > 0 ? { rule: 'bulk-10', amount: off } : undefined;
};

const RULES: readonly Rule[] = [bulk, bigBasket];

/** The discounts that apply to these lines, in rule order. */
export function discountsFor(lines: readonly PricedLine[]): Discount[] {
  const out: Discount[] = [];
  for (const rule of RULES) {
    const d = rule(lines);
    if (d && d.amount > 0) out.push(d);
  }
  return out;
}
