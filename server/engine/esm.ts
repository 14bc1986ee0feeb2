/**
 * ES modules: the text transformations that make them live (pure functions of the text; the loader
 * hooks in esm-hooks.ts run the first on the loader's thread, staging runs the second).
 *
 * Deployed text (what Node loads): instrumented as CommonJS modules are (instrument.ts), except that
 * the version cell comes from a virtual module imported first, `<url>?livepatch-ctl`, which imports
 * the module's own namespace and hands it, with the slot keys, to the engine. Being a dependency, it
 * is evaluated before the module's body even inside an import cycle, so every dispatch point can
 * read the cell from the start. The body ends with `__lp$c.a()`: the module finished evaluating and
 * is adopted as a live module.
 *
 *   import { c as __lp$c } from "file:///app/dist/greet.js?livepatch-ctl";var __lp$r; …module… ;__lp$c.a();
 *
 * New versions (a patch, or a rollback that re-evaluates) are evaluated with `vm` in isolation, like
 * CommonJS versions, so released versions are garbage-collected (the ES module loader would keep
 * every version it ever loaded). Their text is rewritten into a function body: each `import` becomes
 * a constant read from the imported module's exports in the version's generation (functions of live
 * modules dispatch by generation, so a snapshot is enough), `export` keywords go, `import.meta` becomes
 * an object with the same `url`, `filename` and `dirname`, and the body returns an exports object
 * whose getters read the version's own bindings.
 */
import type { AnyNode, Identifier, Literal, Pattern, Program } from 'acorn';
import { analyze, children, type Analysis } from './analyze';
import { CTL_GLOBAL, instrument, type Edit } from './instrument';

/**
 * Query that names the virtual module giving an ES module its version cell: `<module url>?livepatch-ctl`
 * (a file: URL, as `require()` of ES modules insists on, and one that resolves as is).
 */
export const CTL_QUERY = '?livepatch-ctl';

/** What the deployed module's virtual cell module passes to the engine. */
export interface EsmCtlRequest {
  readonly url: string;
  readonly ns: object;
  /** Dispatch point keys in slot order. */
  readonly keys: readonly string[];
}

/** The instrumented text Node loads for an ES module of the app, and its slot keys in slot order. */
export function instrumentDeployed(source: string, url: string): { code: string; keys: string[] } {
  const a = analyze(source, true);
  const keys: string[] = [];
  const slots = new Map<string, number>();
  const slotOf = (key: string): number => {
    let n = slots.get(key);
    if (n === undefined) {
      slots.set(key, (n = keys.length));
      keys.push(key);
    }
    return n;
  };
  const code = instrument(a, slotOf, {
    preamble: `import { c as __lp$c } from ${JSON.stringify(url + CTL_QUERY)};var __lp$r;__lp$c.b();`,
    trailer: '\n;__lp$c.a();\n',
  });
  return { code, keys };
}

/**
 * Source of the virtual module `<url>?livepatch-ctl` for a module instrumented with `keys`. Where no
 * engine runs (a worker thread that inherited the hooks), the module gets an inert cell.
 */
export function ctlModuleSource(url: string, keys: readonly string[]): string {
  return (
    `import * as ns from ${JSON.stringify(url)};\n` +
    `const g = globalThis[Symbol.for(${JSON.stringify(CTL_GLOBAL)})];\n` +
    `export const c = g ? g({ url: ${JSON.stringify(url)}, ns, keys: ${JSON.stringify(keys)} }) : ` +
    `{ s: false, f() {}, a() {}, b() {}, d() {}, e(_, f) { return f; }, k(_, C) { return C; }, o(o) { return o; } };\n`
  );
}

/** Local names bound by a declaration's pattern. */
function boundNames(p: Pattern | null | undefined, out: string[] = []): string[] {
  if (!p) return out;
  switch (p.type) {
    case 'Identifier':
      out.push(p.name);
      break;
    case 'ObjectPattern':
      for (const q of p.properties) boundNames(q.type === 'RestElement' ? q.argument : q.value, out);
      break;
    case 'ArrayPattern':
      for (const e of p.elements) boundNames(e, out);
      break;
    case 'RestElement':
      boundNames(p.argument, out);
      break;
    case 'AssignmentPattern':
      boundNames(p.left, out);
      break;
  }
  return out;
}

const nameOf = (n: Identifier | Literal): string => (n.type === 'Identifier' ? n.name : String(n.value));

/** Exported name → the local binding (or `__lp$i<N>[name]` for re-exports) of an ES module's top level. */
export function exportedLocals(program: Program): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of program.body) {
    if (s.type === 'ExportNamedDeclaration' && s.declaration) {
      const d = s.declaration;
      const names = d.type === 'VariableDeclaration' ? d.declarations.flatMap((x) => boundNames(x.id)) : [d.id.name];
      for (const n of names) out.set(n, n);
    } else if (s.type === 'ExportNamedDeclaration' && !s.source) {
      for (const sp of s.specifiers) out.set(nameOf(sp.exported), nameOf(sp.local));
    } else if (s.type === 'ExportDefaultDeclaration') {
      const d = s.declaration;
      out.set('default', (d.type === 'FunctionDeclaration' || d.type === 'ClassDeclaration') && d.id ? d.id.name : '__lp$default');
    }
  }
  return out;
}

/** Why an ES module version cannot be evaluated as a new version (`top-level await`, `dynamic import()`), if it cannot. */
export function unsupported(program: Program): string | undefined {
  let why: string | undefined;
  const walk = (n: AnyNode, inFn: boolean): void => {
    if (why) return;
    if (n.type === 'ImportExpression') why = 'dynamic import()';
    else if (!inFn && (n.type === 'AwaitExpression' || (n.type === 'ForOfStatement' && n.await))) why = 'top-level await';
    const fn = inFn || /Function/.test(n.type) || n.type === 'StaticBlock' || n.type === 'PropertyDefinition';
    for (const c of children(n)) walk(c, fn);
  };
  walk(program, false);
  return why;
}

/** The message for a version that uses what `unsupported` found. */
export function unsupportedMessage(why: string): string {
  return `${why} is not supported in a new version of an ES module (its top level is evaluated synchronously, in isolation); patch the functions it calls, or restart`;
}

/**
 * The text `vm` evaluates for a new version of an ES module: a function body taking
 * `(__lp$imp, __lp$meta, __lp$exp)` and returning the version's exports object (see file header).
 * Throws an Error naming what a new version cannot contain.
 */
export function evalText(a: Analysis, slotOf: (key: string) => number): string {
  const program = a.program;
  const why = unsupported(program);
  if (why) throw new Error(unsupportedMessage(why));
  const edits: Edit[] = [];
  const head: string[] = [];
  const getters: string[] = [];
  const stars: string[] = [];
  let n = 0;
  const imp = (src: Literal): string => `__lp$imp(${JSON.stringify(src.value)})`;
  for (const s of program.body) {
    if (s.type === 'ImportDeclaration') {
      edits.push({ start: s.start, end: s.end, text: '' });
      if (s.specifiers.length === 0) head.push(`${imp(s.source)};`);
      else {
        const v = `__lp$i${n++}`;
        head.push(`const ${v} = ${imp(s.source)};`);
        for (const sp of s.specifiers) {
          const local = sp.local.name;
          if (sp.type === 'ImportNamespaceSpecifier') head.push(`const ${local} = ${v};`);
          else
            head.push(`const ${local} = ${v}[${JSON.stringify(sp.type === 'ImportDefaultSpecifier' ? 'default' : nameOf(sp.imported))}];`);
        }
      }
    } else if (s.type === 'ExportNamedDeclaration' && s.declaration) {
      edits.push({ start: s.start, end: s.declaration.start, text: '' });
    } else if (s.type === 'ExportNamedDeclaration' || s.type === 'ExportAllDeclaration') {
      edits.push({ start: s.start, end: s.end, text: '' });
      if (!s.source) continue;
      const v = `__lp$i${n++}`;
      head.push(`const ${v} = ${imp(s.source)};`);
      if (s.type === 'ExportAllDeclaration') {
        if (s.exported) getters.push(`get ${JSON.stringify(nameOf(s.exported))}() { return ${v}; }`);
        else stars.push(v);
      } else
        for (const sp of s.specifiers)
          getters.push(`get ${JSON.stringify(nameOf(sp.exported))}() { return ${v}[${JSON.stringify(nameOf(sp.local))}]; }`);
    } else if (s.type === 'ExportDefaultDeclaration') {
      const d = s.declaration;
      const named = (d.type === 'FunctionDeclaration' || d.type === 'ClassDeclaration') && d.id;
      edits.push({ start: s.start, end: d.start, text: named ? '' : 'const __lp$default = ' });
    }
  }
  for (const [exported, local] of exportedLocals(program)) getters.push(`get ${JSON.stringify(exported)}() { return ${local}; }`);
  const meta = (node: AnyNode): void => {
    if (node.type === 'MetaProperty' && node.meta.name === 'import') {
      edits.push({ start: node.start, end: node.end, text: '__lp$meta' });
      return;
    }
    for (const c of children(node)) meta(c);
  };
  meta(program);
  return instrument(a, slotOf, {
    preamble: `var __lp$c = globalThis[Symbol.for(${JSON.stringify(CTL_GLOBAL)})](), __lp$r;${head.join('')}`,
    edits,
    trailer: `\nreturn __lp$exp({ ${getters.join(', ')} }, [${stars.join(', ')}]);`,
  });
}

/** The exports object of an evaluated new version: a null-prototype, module-like object of getters. */
export function makeExports(own: object, stars: readonly object[]): object {
  for (const ns of stars) {
    if (ns === null || typeof ns !== 'object') continue;
    for (const k of Object.keys(ns)) {
      if (k === 'default' || Object.prototype.hasOwnProperty.call(own, k)) continue;
      Object.defineProperty(own, k, { enumerable: true, configurable: false, get: () => (ns as Record<string, unknown>)[k] });
    }
  }
  Object.setPrototypeOf(own, null);
  Object.defineProperty(own, Symbol.toStringTag, { value: 'Module' });
  return Object.freeze(own);
}
