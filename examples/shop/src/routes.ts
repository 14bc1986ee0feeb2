/**
 * The shop's HTTP handlers, one per route. Each returns a JSON-able body (status 200) or throws an
 * HttpError. The router captures these function references once, at start-up.
 */
import { openCart, getCart, cartCount } from './carts';
import { listProducts } from './catalog';
import { HttpError, intParam, parseItems } from './http';
import * as inventory from './inventory';
import { checkout, recentOrders } from './orders';
import { formatCents, quote } from './pricing';

export type Params = Record<string, string>;
export type Handler = (url: URL, params: Params) => unknown | Promise<unknown>;

function cartOr404(id: string | undefined) {
  const cart = id === undefined ? undefined : getCart(id);
  if (!cart) throw new HttpError(404, `no cart "${id}"`);
  return cart;
}

export const health: Handler = () => ({ ok: true, carts: cartCount() });

export const products: Handler = () => listProducts().map((p) => ({ ...p, inStock: inventory.available(p.sku) }));

export const stock: Handler = () => inventory.snapshot();

/** GET /quote?items=mug:12,tee:1 — a price quote without a cart. */
export const quoteItems: Handler = (url) => {
  let q;
  try {
    q = quote(parseItems(url.searchParams.get('items')));
  } catch (e) {
    if (e instanceof RangeError) throw new HttpError(400, e.message);
    throw e;
  }
  return { ...q, display: formatCents(q.total) };
};

export const createCart: Handler = () => openCart().toJSON();

export const showCart: Handler = (_url, params) => {
  const cart = cartOr404(params['id']);
  return { ...cart.toJSON(), quote: cart.quote() };
};

/** POST /carts/:id/items?sku=mug&qty=2 */
export const addItem: Handler = (url, params) => {
  const cart = cartOr404(params['id']);
  const sku = url.searchParams.get('sku') ?? '';
  if (!listProducts().some((p) => p.sku === sku)) throw new HttpError(400, `unknown sku "${sku}"`);
  cart.add(sku, intParam(url, 'qty', 1));
  return { ...cart.toJSON(), quote: cart.quote() };
};

export const checkoutCart: Handler = async (_url, params) => {
  const result = await checkout(cartOr404(params['id']));
  if (!result.ok) throw new HttpError(409, result.reason);
  return result.order;
};

export const orders: Handler = (url) => recentOrders(intParam(url, 'limit', 20));
