/**
 * REPL input → runnable JavaScript: imports become lookups of live modules (so declarations made by
 * one input are plain bindings the next input can see), TypeScript is transpiled on its own (it was
 * type-checked with the session's declarations already), and top-level `await` is rewritten into an
 * async wrapper whose declarations still land in the session scope.
 */
import { dirname, join } from 'node:path';
import * as ts from 'typescript';

const JS_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.CommonJS,
  esModuleInterop: true,
  experimentalDecorators: true,
  sourceMap: false,
  inlineSourceMap: false,
};

/** `{ a: 1 }` is an object literal in a REPL, not a block (as in Node's REPL). */
export function wrapObjectLiteral(code: string): string {
  const t = code.trim();
  if (!t.startsWith('{') || t.endsWith(';')) return code;
  const wrapped = `(${t})`;
  const sf = ts.createSourceFile('x.ts', wrapped, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
  const diags = (sf as unknown as { parseDiagnostics?: unknown[] }).parseDiagnostics ?? [];
  return diags.length === 0 && sf.statements.length === 1 ? wrapped : code;
}

/** Temporaries must stay unique across a session's inputs (they persist in its scope). */
let importCount = 0;

/**
 * Replace top-level imports with `const` bindings to `moduleExpr(specifier)` (a JS expression giving
 * the module's exports). Throws Error(message) when `moduleExpr` refuses a specifier.
 */
export function rewriteImports(code: string, moduleExpr: (spec: string) => string): string {
  const sf = ts.createSourceFile('input.ts', code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  let out = '';
  let last = 0;
  for (const st of sf.statements) {
    let repl: string | undefined;
    if (ts.isImportDeclaration(st) && ts.isStringLiteral(st.moduleSpecifier)) {
      repl = importToConst(st, moduleExpr(st.moduleSpecifier.text), `__lp_import${++importCount}`);
    } else if (
      ts.isImportEqualsDeclaration(st) &&
      ts.isExternalModuleReference(st.moduleReference) &&
      ts.isStringLiteral(st.moduleReference.expression)
    ) {
      repl = st.isTypeOnly ? '' : `const ${st.name.text} = ${moduleExpr(st.moduleReference.expression.text)};`;
    }
    if (repl === undefined) continue;
    out += code.slice(last, st.getStart(sf)) + repl;
    last = st.end;
  }
  return out + code.slice(last);
}

function importToConst(st: ts.ImportDeclaration, expr: string, tmp: string): string {
  const clause = st.importClause;
  if (!clause) return `${expr};`;
  if (clause.isTypeOnly) return '';
  const parts: string[] = [`const ${tmp} = ${expr};`];
  if (clause.name) parts.push(`const ${clause.name.text} = ${tmp} && ${tmp}.__esModule ? ${tmp}.default : ${tmp};`);
  const nb = clause.namedBindings;
  if (nb && ts.isNamespaceImport(nb)) parts.push(`const ${nb.name.text} = ${tmp};`);
  if (nb && ts.isNamedImports(nb)) {
    const names = nb.elements
      .filter((e) => !e.isTypeOnly)
      .map((e) => (e.propertyName ? `${e.propertyName.text}: ${e.name.text}` : e.name.text));
    if (names.length) parts.push(`const { ${names.join(', ')} } = ${tmp};`);
  }
  return parts.join(' ');
}

/** Transpile one input to JavaScript (no type check: that already happened with the session's context). */
export function toJs(code: string): string {
  return ts.transpileModule(code, { compilerOptions: JS_OPTIONS, fileName: 'repl.ts', reportDiagnostics: false }).outputText;
}

type AwaitTransform = (src: string) => string | null;
let awaitTransform: AwaitTransform | null | undefined;

/** Node's own top-level-await rewrite (vendored by ts-node); null when the code has no top-level await. */
export function wrapTopLevelAwait(js: string): string | null {
  if (!/\bawait\b/.test(js)) return null;
  if (awaitTransform === undefined) {
    try {
      const dir = dirname(require.resolve('ts-node/package.json'));
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- a file inside ts-node, found at run time
      awaitTransform = (require(join(dir, 'dist-raw', 'node-internal-repl-await.js')) as { processTopLevelAwait: AwaitTransform })
        .processTopLevelAwait;
    } catch {
      awaitTransform = null;
    }
  }
  if (!awaitTransform) return null;
  try {
    return awaitTransform(js);
  } catch {
    return null; // not parseable as JS: let the evaluator report the syntax error
  }
}
