/**
 * The etcd the fleet tests use: LIVEPATCH_TEST_ETCD=HOST:PORT names a running etcd v3 (`.ci/run` starts
 * one; locally, see docs/fleet.md). Without it the fleet tests are skipped with that message, except
 * under CI (CI set), where they fail: CI must never pass by not running them.
 */
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';

export const ETCD = process.env['LIVEPATCH_TEST_ETCD']?.trim() || undefined;

/** `skip` value for node:test: a reason when there is no etcd and we are not under CI. */
export const skipWithoutEtcd: string | false =
  !ETCD && !process.env['CI'] ? 'no etcd configured: set LIVEPATCH_TEST_ETCD=HOST:PORT (docs/fleet.md) to run the fleet tests' : false;

/** Throws when the fleet tests must run but cannot (CI without LIVEPATCH_TEST_ETCD). */
export function requireEtcd(): string {
  if (!ETCD) throw new Error('LIVEPATCH_TEST_ETCD is not set: the fleet tests need a real etcd (CI starts one in .ci/run)');
  return ETCD;
}

/** A fleet name no other test run uses. */
export function uniqueFleet(tag: string): string {
  return `${tag}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** A raw etcd client for looking at a fleet's keys (the real store, read directly). */
export function rawEtcd(): Etcd3 {
  return new Etcd3({ hosts: `http://${requireEtcd()}` });
}

/** Poll `cond` every 100 ms until it holds; throw after `ms` naming `what`. */
export async function waitFor(what: string, cond: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** How many members are registered under a fleet's key `prefix` (`livepatch/fleets/NAME/`). */
export async function memberCount(etcd: Etcd3, prefix: string): Promise<number> {
  return (await etcd.getAll().prefix(`${prefix}members/`).keys()).length;
}

/** After a fleet test: delete the fleet's keys (best effort) and close the client. */
export async function dropFleet(etcd: Etcd3 | undefined, prefix: string): Promise<void> {
  if (!etcd) return;
  await etcd
    .delete()
    .prefix(prefix)
    .catch(() => undefined);
  etcd.close();
}
