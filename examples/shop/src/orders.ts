/**
 * Checkout: the asynchronous path through several modules. It prices the cart, awaits a stock
 * reservation, awaits the payment, then records the order. A request that starts before a patch sees
 * the old code at every step, even across the awaits; one that starts after sees only the new code.
 */
import { keep } from 'livepatch';
import type { Cart } from './cart';
import * as inventory from './inventory';
import { charge } from './payments';
import type { Quote } from './pricing';

export interface Order {
  id: number;
  cart: string;
  total: number;
  quote: Quote;
  payment: string;
  time: string;
}

export type CheckoutResult = { ok: true; order: Order } | { ok: false; reason: string };

const RECENT = 100;
// Recent orders and the next order number survive patches of this module.
const book = keep('orders', () => ({ next: 1, recent: [] as Order[] }));

/** Check a cart out: quote, reserve stock, charge, record. Nothing is kept on failure. */
export async function checkout(cart: Cart): Promise<CheckoutResult> {
  if (cart.isEmpty()) return { ok: false, reason: 'cart is empty' };
  const quote = cart.quote();
  const lines = cart.lines();
  if (!(await inventory.reserve(lines))) return { ok: false, reason: 'out of stock' };
  const payment = await charge(quote.total);
  if (!payment.ok) {
    inventory.release(lines);
    return { ok: false, reason: payment.reason ?? 'payment failed' };
  }
  const order: Order = { id: book.next++, cart: cart.id, total: quote.total, quote, payment: payment.reference ?? '', time: new Date().toISOString() };
  book.recent.push(order);
  if (book.recent.length > RECENT) book.recent.shift();
  cart.clear();
  return { ok: true, order };
}

/** The most recent orders, newest first. */
export function recentOrders(limit = 20): Order[] {
  return book.recent.slice(-limit).reverse();
}
