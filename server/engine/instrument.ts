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
 * Line numbers are kept (nothing inserted contains a newline). Visible differences: a dispatch point's
 * `toString()` shows the inserted check; an arrow function's parameter list becomes `(...__lp$a)`
 * (its `length` and `name` are restored).
 */
import type { AnyNode, Pattern } from 'acorn';
import { children, isFn, type Analysis, type FunctionNode } from './analyze';

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

/** Find the function node of a point again (analysis keeps ranges, the program keeps nodes). */
function nodeAt(program: AnyNode, start: number, end: number): FunctionNode | undefined {
  let found: FunctionNode | undefined;
  const walk = (n: AnyNode): void => {
    if (found || n.start > start || n.end < end) return;
    if (n.start === start && n.end === end && isFn(n)) {
      found = n;
      return;
    }
    for (const c of children(n)) walk(c);
  };
  walk(program);
  return found;
}

/** `length` of a function with these parameters (those before the first default or rest). */
function paramLength(params: readonly Pattern[]): number {
  let n = 0;
  for (const p of params) {
    if (p.type === 'AssignmentPattern' || p.type === 'RestElement') break;
    n++;
  }
  return n;
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
    `${a.preambleAt > 0 ? ';' : ''}${opts.preamble ?? `var __lp$c = globalThis[Symbol.for(${JSON.stringify(CTL_GLOBAL)})](), __lp$r;`}`,
  );

  for (const p of a.points) {
    if (p.unforwardable || p.kind === 'class') continue;
    // A constructor forwards construction to the other version's class: it uses the class's slot.
    const slot = slotOf(p.kind === 'constructor' ? p.key.slice(0, p.key.lastIndexOf('#constructor')) : p.key);
    const fn = nodeAt(a.program, p.start, p.end);
    if (!fn) continue;
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
    if (p.kind === 'function' || p.kind === 'arrow') {
      // A declaration point is a named function declaration (analyze.ts).
      if (p.declaration && fn.id) insert(fn.end, `;__lp$c.d(${slot}, ${fn.id.name});`);
      else {
        const name = p.inferredName !== undefined ? JSON.stringify(p.inferredName) : 'undefined';
        const len = p.arrow ? String(paramLength(fn.params)) : 'undefined';
        insert(fn.start, `__lp$c.e(${slot}, `);
        insert(fn.end, `, ${name}, ${len})`);
      }
    }
  }

  for (const c of a.containers) {
    const members = `[${c.members.map((m) => `[${m.keyExpr},${slotOf(m.pointKey)},${JSON.stringify(m.kind[0])},${m.isStatic ? 1 : 0}]`).join(',')}]`;
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
    if (c.declaration) insert(c.end, `;__lp$c.k(${slot}, ${c.name}, ${members});`);
    else {
      insert(c.start, `__lp$c.k(${slot}, `);
      insert(c.end, `, ${members}, ${c.inferredName !== undefined ? JSON.stringify(c.inferredName) : 'undefined'})`);
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
