/**
 * The cart store: every open cart by id, kept across patches (`keep`) so no customer loses a cart
 * when the code changes.
 */
import { randomUUID } from 'node:crypto';
import { keep } from 'livepatch';
import { Cart } from './cart';

const MAX_CARTS = 10_000;
const carts = keep('carts', () => new Map<string, Cart>());

/** Open a new, empty cart. Evicts the oldest cart when the store is full. */
export function openCart(): Cart {
  if (carts.size >= MAX_CARTS) {
    const oldest = carts.keys().next().value;
    if (oldest !== undefined) carts.delete(oldest);
  }
  const cart = new Cart(randomUUID().slice(0, 8));
  carts.set(cart.id, cart);
  return cart;
}

/** The cart with this id, or undefined. */
export function getCart(id: string): Cart | undefined {
  return carts.get(id);
}

export function closeCart(id: string): void {
  carts.delete(id);
}

export function cartCount(): number {
  return carts.size;
}
