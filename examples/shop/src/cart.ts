/**
 * Shopping carts: long-lived objects that outlive any one request. A cart created before a patch
 * keeps its lines and, through the live class facade, runs the patched methods afterwards.
 */
import { quote, type OrderLine, type Quote } from './pricing';

export class Cart {
  readonly id: string;
  readonly created = new Date().toISOString();
  private readonly items = new Map<string, number>();

  constructor(id: string) {
    this.id = id;
  }

  /** Add `qty` units of `sku` (quantities accumulate). */
  add(sku: string, qty: number): void {
    if (!Number.isInteger(qty) || qty < 1) throw new RangeError(`bad quantity ${qty}`);
    this.items.set(sku, (this.items.get(sku) ?? 0) + qty);
  }

  /** Remove a SKU entirely. */
  remove(sku: string): void {
    this.items.delete(sku);
  }

  lines(): OrderLine[] {
    return [...this.items].map(([sku, qty]) => ({ sku, qty }));
  }

  isEmpty(): boolean {
    return this.items.size === 0;
  }

  /** The current price of the cart's contents. */
  quote(): Quote {
    return quote(this.lines());
  }

  clear(): void {
    this.items.clear();
  }

  toJSON(): { id: string; created: string; lines: OrderLine[] } {
    return { id: this.id, created: this.created, lines: this.lines() };
  }
}
