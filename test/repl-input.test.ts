/** REPL input handling as pure functions: incomplete-input detection, import rewriting, object literals. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isIncomplete } from '../client/repl/incomplete';
import { rewriteImports, wrapObjectLiteral, wrapTopLevelAwait } from '../server/repl/transpile';

describe('REPL input', () => {
  it('continues while braces, brackets, templates or expressions are open', () => {
    for (const t of ['function f() {', 'const a = [1,', 'foo(', 'const t = `a', '1 +', 'if (x) {\n  y()'])
      assert.equal(isIncomplete(t), true, t);
    for (const t of ['1 + 1', 'function f() {}', 'const a = [1, 2]', '', "'open string", 'x)']) assert.equal(isIncomplete(t), false, t);
  });

  it('rewrites imports into const bindings of the given module expression', () => {
    const out = rewriteImports(
      "import * as r from './src/rates';\nimport q, { quote, tag as t, type X } from './src/quote';\nimport type { Y } from 'z';\nr.rate('EUR')",
      (s) => `M(${JSON.stringify(s)})`,
    );
    assert.match(out, /const (__lp_import\d+) = M\("\.\/src\/rates"\); const r = \1;/);
    assert.match(
      out,
      /const (__lp_import\d+) = M\("\.\/src\/quote"\); const q = \1 && \1\.__esModule \? \1\.default : \1; const \{ quote, tag: t \} = \1;/,
    );
    assert.ok(!out.includes("'z'"));
    assert.ok(out.endsWith("r.rate('EUR')"));
  });

  it('reads a leading brace as an object literal and wraps top-level await', () => {
    assert.equal(wrapObjectLiteral('{ a: 1 }'), '({ a: 1 })');
    assert.equal(wrapObjectLiteral('{ let a = 1; }'), '{ let a = 1; }');
    assert.equal(wrapTopLevelAwait('1 + 1'), null);
    assert.match(wrapTopLevelAwait('const x = await f();') ?? '', /^let x; \(async \(\) => \{/);
  });
});
