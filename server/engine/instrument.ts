/**
 * In-place dispatch: rewrite a module version's JavaScript so that each of its forwardable dispatch
 * points (analyze.ts) starts with a one-branch check and registers itself with the version's control
 * cell (dispatch.ts).
 *
 *   function greet(who) { if (__lp$c.s && (__lp$r = __lp$c.f(3, this, arguments, new.target)) !== __lp$c) return __lp$r; …original body }
 *
 * While the version is the only one its module has live, `__lp$c.s` is false and the check costs one
 * property load. Once another version exists, the call is forwarded to the function with the same key
 * in the caller's generation's version (or runs here when that is this version). Nothing else of the
 * module changes: its exports object, functions, classes, prototypes, properties and symbols are the
 * ones the module made, so importers and frameworks see exactly what they would without livepatch.
 *
 * Line numbers are kept (nothing inserted contains a newline); the names V8 infers for functions and
 * classes are kept too (see registrationSite). Visible differences: a dispatch point's `toString()`
 * shows the inserted check; an arrow function's parameter list becomes `(...__lp$a)` (its `length`
 * and `name` are restored); columns after an inserted check shift.
 */
import type { AnyNode } from 'acorn';
import { children, isFn, paramLength, type Analysis, type FunctionNode } from './analyze';

/** Modules larger than this (bytes of JavaScript) are loaded as they are, not live: bundles, generated code. */
export function maxModuleBytes(): number {
  const v = Number(process.env['LIVEPATCH_MAX_MODULE_BYTES']);
  return Number.isInteger(v) && v > 0 ? v : 4 * 1024 * 1024;
}

/** Why a module's text is not instrumented at load (it then runs as it is, not live), if it is not. */
export function notInstrumented(text: string): { kind: string; reason: string } | undefined {
  const max = maxModuleBytes();
  if (text.length <= max) return undefined;
  return {
    kind: `larger than LIVEPATCH_MAX_MODULE_BYTES, ${max} bytes`,
    reason: `its JavaScript is ${text.length} bytes, more than LIVEPATCH_MAX_MODULE_BYTES (${max}): bundles and generated code are not made live`,
  };
}

/** The global through which a module version's code finds its control cell. */
export const CTL_GLOBAL = 'livepatch.ctl';

/** A text edit of a module version: replace [start, end) with `text` (an insertion when start = end). */
export interface Edit {
  start: number;
  end: number;
  text: string;
}

/** How the instrumented text finds its cell, and edits of its own a module format needs. */
export interface InstrumentOptions {
  /** Replaces the CommonJS preamble (which takes the cell from the global, see dispatch.ts). */
  preamble?: string;
  /** More edits (import/export rewriting of ES modules), applied with the instrumentation's. */
  edits?: readonly Edit[];
  /** Text appended at the end. */
  trailer?: string;
}

const prologue = (slot: number, self: string, args: string, nt: string): string =>
  `if (__lp$c.s && (__lp$r = __lp$c.f(${slot}, ${self}, ${args}, ${nt})) !== __lp$c) return __lp$r;`;

/** Position inside a function body after its directive prologue. */
function bodyInsertAt(fn: FunctionNode): number {
  const body = fn.body;
  let at = body.start + 1;
  for (const s of body.type === 'BlockStatement' ? body.body : []) {
    if (s.type === 'ExpressionStatement' && typeof s.directive === 'string') at = s.end;
    else break;
  }
  return at;
}

/**
 * Find a point's node again (analysis keeps ranges, the program keeps nodes): the node of that range
 * that `is` accepts, with its ancestors (program first).
 */
function pathTo<T extends AnyNode>(
  program: AnyNode,
  start: number,
  end: number,
  is: (n: AnyNode) => n is T,
): { node: T; ancestors: AnyNode[] } | undefined {
  const ancestors: AnyNode[] = [];
  let n: AnyNode | undefined = program;
  while (n) {
    if (n.start === start && n.end === end && is(n)) return { node: n, ancestors };
    ancestors.push(n);
    n = children(n).find((c) => c.start <= start && c.end >= end);
  }
  return undefined;
}

/**
 * The cell's registration methods as plain functions: V8 adds a member callee's names to the name it
 * infers for a literal among the call's arguments (`__lp$c.e.exports.f`), but not a plain function's.
 */
const REGISTRARS = 'var __lp$e = __lp$c.e.bind(__lp$c), __lp$k = __lp$c.k.bind(__lp$c);';

const isClass = (n: AnyNode): n is AnyNode & { type: 'ClassExpression' | 'ClassDeclaration' } =>
  n.type === 'ClassExpression' || n.type === 'ClassDeclaration';

/**
 * Where a function or class expression's registration goes so that V8 still names it as it would
 * without livepatch. V8 infers the name that stack traces, CPU profiles and heap snapshots show (and
 * that an instance's constructor name comes from) from where the literal stands: `exports.f =
 * function () {}` is `exports.f`, `const Shop = function () {}` makes `Shop` instances. Wrapping the
 * literal itself in a call would lose that, so:
 * - `target = <literal>`: the whole assignment is wrapped (`__lp$e(slot, target = <literal>, …)`,
 *   the value is the same function);
 * - `const name = <literal>` as a top-level statement: the registration follows the statement
 *   (`;__lp$e(slot, name, …);`);
 * - a property's value in an object literal is registered by its object (analyze.ts, `inObject`);
 * - anywhere else (a call's argument, where V8 gives no name either): the literal is wrapped.
 */
function registrationSite(node: AnyNode, ancestors: readonly AnyNode[]): { wrap: [number, number] } | { after: number; name: string } {
  const parent = ancestors[ancestors.length - 1];
  if (parent?.type === 'AssignmentExpression' && parent.operator === '=' && parent.right === node)
    return { wrap: [parent.start, parent.end] };
  if (parent?.type === 'VariableDeclarator' && parent.init === node && parent.id.type === 'Identifier') {
    const decl = ancestors[ancestors.length - 2];
    const holder = ancestors[ancestors.length - 3];
    // An exported declaration of an ES module is a statement of its own too: the registration follows it.
    const stmt = holder?.type === 'ExportNamedDeclaration' ? holder : decl;
    if (decl && ancestors[ancestors.indexOf(stmt!) - 1]?.type === 'Program') return { after: stmt!.end, name: parent.id.name };
  }
  return { wrap: [node.start, node.end] };
}

/**
 * The instrumented text of `a`'s module. `slotOf(key)` gives the module's slot number for a point
 * key (the same key gets the same slot in every version of the module).
 */
export function instrument(a: Analysis, slotOf: (key: string) => number, opts: InstrumentOptions = {}): string {
  const src = a.source;
  const edits: Edit[] = [...(opts.edits ?? [])];
  const insert = (at: number, text: string): void => void edits.push({ start: at, end: at, text });

  insert(
    a.preambleAt,
    `${a.preambleAt > 0 ? ';' : ''}${opts.preamble ?? `var __lp$c = globalThis[Symbol.for(${JSON.stringify(CTL_GLOBAL)})](), __lp$r;`}${REGISTRARS}`,
  );

  for (const p of a.points) {
    if (p.unforwardable || p.kind === 'class') continue;
    // A constructor forwards construction to the other version's class: it uses the class's slot.
    const slot = slotOf(p.kind === 'constructor' ? p.key.slice(0, p.key.lastIndexOf('#constructor')) : p.key);
    const found = pathTo(a.program, p.start, p.end, isFn);
    if (!found) continue;
    const fn = found.node;
    if (p.arrow) {
      const arrowAt = src.indexOf('=>', fn.params.length ? fn.params[fn.params.length - 1].end : fn.start);
      let paramsStart = fn.start;
      if (fn.async) paramsStart = fn.start + src.slice(fn.start, arrowAt).indexOf('async') + 5;
      edits.push({ start: paramsStart, end: arrowAt, text: ' (...__lp$a) ' });
      const vars = fn.params.length ? `var [${src.slice(fn.params[0].start, fn.params[fn.params.length - 1].end)}] = __lp$a;` : '';
      const pro = prologue(slot, 'undefined', '__lp$a', 'undefined');
      if (fn.body.type === 'BlockStatement') insert(fn.body.start + 1, pro + vars);
      // Everything after `=>` (a parenthesised body's parentheses are not part of the body node).
      else edits.push({ start: arrowAt + 2, end: fn.end, text: `{${pro}${vars}return (${src.slice(arrowAt + 2, fn.end)});}` });
    } else {
      const self = p.kind === 'constructor' ? 'undefined' : 'this';
      insert(bodyInsertAt(fn), prologue(slot, self, 'arguments', 'new.target'));
    }
    // A function that is an object literal's value is registered by its object (the container below).
    if ((p.kind === 'function' || p.kind === 'arrow') && !p.inObject) {
      // A declaration point is a named function declaration (analyze.ts).
      if (p.declaration && fn.id) insert(fn.end, `;__lp$c.d(${slot}, ${fn.id.name});`);
      else {
        const name = p.inferredName !== undefined ? JSON.stringify(p.inferredName) : 'undefined';
        const len = p.arrow ? String(paramLength(fn.params)) : 'undefined';
        const site = registrationSite(fn, found.ancestors);
        if ('after' in site) insert(site.after, `;__lp$e(${slot}, ${site.name}, ${name}, ${len});`);
        else {
          insert(site.wrap[0], `__lp$e(${slot}, `);
          insert(site.wrap[1], `, ${name}, ${len})`);
        }
      }
    }
  }

  for (const c of a.containers) {
    const members = `[${c.members.map((m) => `[${m.keyExpr},${slotOf(m.pointKey)},${JSON.stringify(m.kind[0])},${m.isStatic ? 1 : 0}${m.length !== undefined ? `,${m.length}` : ''}]`).join(',')}]`;
    if (c.kind === 'object') {
      insert(c.start, '__lp$c.o(');
      insert(c.end, `, ${members})`);
      continue;
    }
    const slot = slotOf(c.key!);
    if (!c.hasConstructor) {
      const ctor = c.derived
        ? `constructor(...__lp$a) {${prologue(slot, 'undefined', '__lp$a', 'new.target')}super(...__lp$a);}`
        : `constructor() {${prologue(slot, 'undefined', 'arguments', 'new.target')}}`;
      insert(c.bodyStart!, ctor);
    }
    if (c.declaration) {
      insert(c.end, `;__lp$c.k(${slot}, ${c.name}, ${members});`);
      continue;
    }
    const found = pathTo(a.program, c.start, c.end, isClass);
    const site = found ? registrationSite(found.node, found.ancestors) : { wrap: [c.start, c.end] as [number, number] };
    const name = c.inferredName !== undefined ? JSON.stringify(c.inferredName) : 'undefined';
    if ('after' in site) insert(site.after, `;__lp$k(${slot}, ${site.name}, ${members}, ${name});`);
    else {
      insert(site.wrap[0], `__lp$k(${slot}, `);
      insert(site.wrap[1], `, ${members}, ${name})`);
    }
  }
  return apply(src, edits) + (opts.trailer ?? '');
}

/** Apply non-overlapping edits; insertions at a position go before a replacement starting there. */
function apply(src: string, edits: Edit[]): string {
  edits.sort((x, y) => x.start - y.start || x.end - x.start - (y.end - y.start));
  let out = '';
  let pos = 0;
  for (const e of edits) {
    if (e.start < pos) continue; // cannot happen for a well-formed analysis; never corrupt the text
    out += src.slice(pos, e.start) + e.text;
    pos = e.end;
  }
  return out + src.slice(pos);
}
