/**
 * The integration test of the whole product: `npm run demo`'s scripted tour (no terminal) against the
 * example shop — real build, real child process with the agent, real CLI binary, real HTTP. It must
 * exit 0 and show the changed behaviour; a tour whose patch is rejected must exit non-zero. Either
 * way the shop process must be gone afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from './helpers/project';
import { run } from '../testkit/launch';

const DEMO = join(REPO, 'dist', 'examples', 'demo.js');

async function runDemo(env: Record<string, string>): Promise<{ code: number; out: string }> {
  // CI=true selects the tour; port 0 avoids clashing with a demo someone is running.
  const r = await run({ args: [DEMO], cwd: REPO, env: { CI: 'true', LIVEPATCH_DEMO_LISTEN: '127.0.0.1:0', ...env }, timeoutMs: 110_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

function assertShopStopped(out: string): void {
  const m = /shop \(pid (\d+)\) stopped/.exec(out);
  assert.ok(m, `the runner reports stopping the shop\n${out}`);
  assert.throws(() => process.kill(Number(m[1]), 0), /ESRCH/, 'the shop process is gone');
}

test(
  'the scripted demo tour applies the sample patch, shows the new prices, checks out, rolls back, keeps inventory across a patch and exits 0',
  { timeout: 120_000 },
  async () => {
    const { code, out } = await runDemo({});
    assert.equal(code, 0, out);
    // 12 mugs at 12.00: 5 % basket discount, tax on the undiscounted subtotal → 165.60; patched: 10 %
    // bulk + 5 % basket, tax after discounts → 146.88; rolled back → 165.60 again.
    assert.match(out, /total 165\.60 -> 146\.88/, out);
    assert.match(out, /bulk-10 -14\.40/, out);
    assert.match(out, /still holds 12 mugs; its total is now 146\.88/, out);
    assert.match(out, /order #1: total 146\.88, payment ch_[\w-]+; mugs in stock 500 -> 488/, out);
    assert.match(out, /mug: \{"units":488,"status":"reorder"\}/, 'inventory kept its state across its own patch');
    const afterRollback = out.slice(out.indexOf('Behaviour after the rollback'));
    assert.match(afterRollback, /total 165\.60/, out);
    assert.match(out, /every step passed/, out);
    assertShopStopped(out);
  },
);

test('a tour whose patch does not type-check fails with a non-zero exit and still stops the shop', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lp-demo-bad-'));
  try {
    cpSync(join(REPO, 'examples', 'shop', 'patches', 'bulk-discount'), dir, { recursive: true });
    const file = join(dir, 'src', 'pricing.ts');
    // quote() now returns a string where every caller expects a Quote: the checker must refuse it.
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace(
        'export function quote(lines: readonly OrderLine[]): Quote {',
        'export function quote(lines: readonly OrderLine[]): string {\n  return "broken";\n}\nexport function unused(lines: readonly OrderLine[]): Quote {',
      ),
    );
    const { code, out } = await runDemo({ LIVEPATCH_DEMO_PATCH: dir });
    assert.notEqual(code, 0, out);
    assert.match(out, /demo failed: livepatch apply exited 1/, out);
    assert.match(out, /error TS\d+/, 'the type error is shown in tsc form');
    assertShopStopped(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
