/**
 * A simulated card processor. Charging is asynchronous (a network round trip to the processor) and
 * declines amounts above a limit, so checkouts exercise the failure path too.
 */
import { randomUUID } from 'node:crypto';

export interface Charge {
  ok: boolean;
  reference?: string;
  reason?: string;
}

/** Largest single charge the processor accepts, in cents. */
export const CHARGE_LIMIT = 500_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Charge `cents` to the customer; resolves with the processor's answer. */
export async function charge(cents: number): Promise<Charge> {
  await sleep(3);
  if (cents <= 0) return { ok: false, reason: 'nothing to charge' };
  if (cents > CHARGE_LIMIT) return { ok: false, reason: 'declined: over the card limit' };
  return { ok: true, reference: `ch_${randomUUID().slice(0, 12)}` };
}
