/**
 * The product catalogue: what the shop sells and at what unit price. Prices are integer cents so
 * pricing never accumulates floating-point error.
 */

export interface Product {
  sku: string;
  name: string;
  /** Unit price in cents. */
  price: number;
  category: 'kitchen' | 'apparel' | 'stationery';
}

const PRODUCTS: readonly Product[] = [
  { sku: 'mug', name: 'Enamel mug', price: 1200, category: 'kitchen' },
  { sku: 'tee', name: 'Organic T-shirt', price: 2500, category: 'apparel' },
  { sku: 'pen', name: 'Fountain pen', price: 4500, category: 'stationery' },
  { sku: 'pad', name: 'Dot-grid notebook', price: 900, category: 'stationery' },
  { sku: 'cap', name: 'Cotton cap', price: 1800, category: 'apparel' },
];

/** Every product, in catalogue order. */
export function listProducts(): readonly Product[] {
  return PRODUCTS;
}

/** The product with this SKU, or undefined. */
export function findProduct(sku: string): Product | undefined {
  return PRODUCTS.find((p) => p.sku === sku);
}
