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

const RULES: readonly Rule[] = [bigBasket];

/** The discounts that apply to these lines, in rule order. */
export function discountsFor(lines: readonly PricedLine[]): Discount[] {
  const out: Discount[] = [];
  for (const rule of RULES) {
    const d = rule(lines);
    if (d && d.amount > 0) out.push(d);
  }
  return out;
}
