/**
 * Rendering of read-only evaluation results that never runs the value's own code. It is called
 * inside the side-effect-free evaluation itself (so V8's check covers whatever it might still reach,
 * a Proxy trap for instance), and it only ever reads property descriptors: getters are shown as
 * `[Getter]` and never called; toJSON, toString, Symbol.toPrimitive, Symbol.toStringTag, inspect.custom
 * and `stack` are never looked at; builtins (Map, Set, Date, RegExp, boxed primitives, typed arrays)
 * are recognised by calling the engine's own methods captured at load, which read internal slots.
 *
 * Everything here must itself be side-effect-free as V8 sees it: it writes only to objects it creates
 * (no module-level state), and calls only builtins V8 knows to be pure.
 */

/** Largest rendering (characters) before it is cut. */
export const SAFE_RENDER_MAX = 64 * 1024;
const MAX_DEPTH = 4;
const MAX_ITEMS = 200;
/** Values visited at most per rendering, so a wide graph cannot keep the evaluation busy. */
const MAX_NODES = 20_000;
const BREAK_LENGTH = 80;

// Builtins captured at load, before any evaluation could have touched the globals.
const getProto = Object.getPrototypeOf as (o: unknown) => Record<PropertyKey, unknown>;
const getOwn = Object.getOwnPropertyDescriptor;
const ownKeys = Reflect.ownKeys;
const isArray = Array.isArray;
const apply = Reflect.apply;
const isView = ArrayBuffer.isView;
const ObjectProto = Object.prototype;
const FunctionProto = Function.prototype;
const ErrorProto = Error.prototype;
const PromiseProto = Promise.prototype;
const fnToString = Function.prototype.toString;
const jsonStringify = JSON.stringify as (s: string) => string;
const symToString = Symbol.prototype.toString;
const getter = (o: object, k: string): ((this: unknown) => unknown) => getOwn(o, k)!.get as (this: unknown) => unknown;
const mapSize = getter(Map.prototype, 'size');
const setSize = getter(Set.prototype, 'size');
const mapEntries = Map.prototype.entries;
const setValues = Set.prototype.values;
const mapIterNext = getProto(new Map().entries()).next as (this: unknown) => IteratorResult<unknown>;
const setIterNext = getProto(new Set().values()).next as (this: unknown) => IteratorResult<unknown>;
const weakMapHas = WeakMap.prototype.has;
const weakSetHas = WeakSet.prototype.has;
const dateGetTime = Date.prototype.getTime;
const dateToISO = Date.prototype.toISOString;
const typedArrayProto = getProto(Uint8Array.prototype) as object;
const typedLength = getter(typedArrayProto, 'length');
const boxes: [string, object, (this: unknown) => unknown][] = [
  ['Number', Number.prototype, Number.prototype.valueOf],
  ['String', String.prototype, String.prototype.valueOf],
  ['Boolean', Boolean.prototype, Boolean.prototype.valueOf],
  ['Symbol', Symbol.prototype, Symbol.prototype.valueOf],
  ['BigInt', BigInt.prototype, BigInt.prototype.valueOf],
];
const MapProto = Map.prototype;
const SetProto = Set.prototype;
const WeakMapProto = WeakMap.prototype;
const WeakSetProto = WeakSet.prototype;
const DateProto = Date.prototype;
const RegExpProto = RegExp.prototype;

interface Ctx {
  seen: object[];
  /** Characters emitted so far (an estimate that only ever grows). */
  size: number;
  nodes: number;
  /** Set once the budget is spent: from then on every value is elided as `…`. */
  full: boolean;
}

/** `fn.call(self)` if `self` carries fn's internal slot, else `undefined` (a brand check). */
function tryCall(fn: (this: unknown, ...a: unknown[]) => unknown, self: unknown, ...args: unknown[]): { v: unknown } | undefined {
  try {
    return { v: apply(fn, self, args) };
  } catch {
    return undefined;
  }
}

/** A string literal as util.inspect writes it (single quotes unless the text has some), escaped by JSON.stringify. */
function quote(s: string, max: number): string {
  let more = '';
  if (s.length > max) {
    more = `... ${s.length - max} more characters`;
    s = s.slice(0, max);
  }
  // Builtins only: a loop over every character is slow under the side-effect check.
  const j = jsonStringify(s);
  if (s.includes("'")) return j + more;
  // Every `"` in JSON's text is escaped by the character before it: drop that backslash.
  let inner = '';
  let from = 1;
  const end = j.length - 1;
  for (let i = j.indexOf('"', 1); i !== -1 && i < end; i = j.indexOf('"', i + 1)) {
    inner += j.slice(from, i - 1) + '"';
    from = i + 1;
  }
  return "'" + inner + j.slice(from, end) + "'" + more;
}

function isIdentifier(k: string): boolean {
  if (k.length === 0) return false;
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36;
    const digit = c >= 48 && c <= 57;
    if (!letter && !(digit && i > 0)) return false;
  }
  return true;
}

function keyText(k: string | symbol): string {
  if (typeof k === 'symbol') return '[' + apply(symToString, k, []) + ']';
  return isIdentifier(k) ? k : quote(k, 1000);
}

function primitive(v: unknown, top: boolean): string | undefined {
  switch (typeof v) {
    case 'string':
      return top ? quote(v, SAFE_RENDER_MAX) : quote(v, 10_000);
    case 'number':
      return v === 0 && 1 / v < 0 ? '-0' : String(v);
    case 'bigint':
      return String(v) + 'n';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      return 'undefined';
    case 'symbol':
      return apply(symToString, v, []) as string;
    default:
      return v === null ? 'null' : undefined;
  }
}

/** A data property's value along the prototype chain; accessors and missing keys give undefined. */
function dataProp(o: object, key: string): unknown {
  let p: object | null = o;
  for (let hops = 0; p !== null && hops < 100; hops++) {
    const d = getOwn(p, key);
    if (d) return 'value' in d ? d.value : undefined;
    p = getProto(p) as object | null;
  }
  return undefined;
}

/** The prototype chain of `o` (at most 100 links). */
function protoChain(o: object): object[] {
  const out: object[] = [];
  let p = getProto(o) as object | null;
  while (p !== null && out.length < 100) {
    out.push(p);
    p = getProto(p) as object | null;
  }
  return out;
}

/** The constructor name from the first `constructor` data property up the chain; null for null-prototype objects. */
function className(chain: object[]): string | null {
  if (chain.length === 0) return null;
  for (let i = 0; i < chain.length; i++) {
    const d = getOwn(chain[i]!, 'constructor');
    if (d) {
      if ('value' in d && typeof d.value === 'function') {
        const n = getOwn(d.value as object, 'name');
        if (n && 'value' in n && typeof n.value === 'string' && n.value) return n.value;
      }
      return '';
    }
  }
  return '';
}

function fnName(f: object): string {
  const n = getOwn(f, 'name');
  return n && 'value' in n && typeof n.value === 'string' ? n.value : '';
}

function join(open: string, parts: string[], close: string, indent: string): string {
  if (parts.length === 0) return open + close;
  let len = open.length + close.length;
  let multiline = false;
  for (let i = 0; i < parts.length; i++) {
    len += parts[i]!.length + 2;
    if (parts[i]!.includes('\n')) multiline = true;
  }
  if (!multiline && len + indent.length <= BREAK_LENGTH) return open + ' ' + parts.join(', ') + ' ' + close;
  const inner = indent + '  ';
  let out = open + '\n';
  for (let i = 0; i < parts.length; i++) out += inner + parts[i] + (i < parts.length - 1 ? ',\n' : '\n');
  return out + indent + close;
}

function charge(ctx: Ctx, n: number): void {
  ctx.size += n;
  ctx.nodes++;
  if (ctx.size > SAFE_RENDER_MAX || ctx.nodes > MAX_NODES) ctx.full = true;
}

const isIndex = (k: string | symbol): boolean => {
  if (typeof k !== 'string' || k.length === 0 || k.length > 10) return false;
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    if (c < 48 || c > 57 || (i === 0 && c === 48 && k.length > 1)) return false;
  }
  return true;
};
/**
 * Own enumerable properties as `key: value` (accessors as [Getter]/[Setter]); skips `skip(key)` and,
 * with `afterIndices`, the leading integer keys (an array's elements, already shown).
 */
function props(o: object, ctx: Ctx, depth: number, indent: string, skip: (k: string | symbol) => boolean, afterIndices = false): string[] {
  const out: string[] = [];
  const keys = ownKeys(o);
  let shown = 0;
  let first = 0;
  if (afterIndices) {
    // Integer keys come first in own-key order: find where they end without visiting each.
    let hi = keys.length;
    while (first < hi) {
      const mid = (first + hi) >>> 1;
      if (isIndex(keys[mid]!)) first = mid + 1;
      else hi = mid;
    }
  }
  for (let i = first; i < keys.length; i++) {
    const k = keys[i]!;
    if (skip(k)) continue;
    if (ctx.full) {
      out.push('…');
      break;
    }
    const d = getOwn(o, k);
    if (!d || !d.enumerable) continue;
    if (shown >= MAX_ITEMS) {
      out.push(`... more properties`);
      break;
    }
    shown++;
    let v: string;
    if ('value' in d) v = walk(d.value, ctx, depth + 1, indent + '  ');
    else v = d.get ? (d.set ? '[Getter/Setter]' : '[Getter]') : '[Setter]';
    const line = keyText(k) + ': ' + v;
    charge(ctx, line.length);
    out.push(line);
  }
  return out;
}

const noSkip = (): boolean => false;

function walk(v: unknown, ctx: Ctx, depth: number, indent: string): string {
  if (ctx.full) return '…';
  const p = primitive(v, depth === 0);
  if (p !== undefined) {
    charge(ctx, p.length);
    return p;
  }
  const o = v as object;
  if (ctx.seen.includes(o)) return '[Circular]';
  charge(ctx, 2);
  const isFn = typeof o === 'function';
  const chain = protoChain(o);
  const inChain = (p: object): boolean => chain.includes(p);
  const name = className(chain);
  const prefix = name === null ? '[Object: null prototype] ' : name === 'Object' || name === '' ? '' : name + ' ';

  if (isFn) {
    let src = '';
    const s = tryCall(fnToString as (this: unknown) => unknown, o);
    if (s && typeof s.v === 'string') src = s.v;
    const n = fnName(o);
    const head = src.startsWith('class') ? `[class ${n || '(anonymous)'}]` : `[Function: ${n || '(anonymous)'}]`;
    if (depth > MAX_DEPTH) return head;
    ctx.seen.push(o);
    try {
      const parts = props(o, ctx, depth, indent, noSkip);
      return parts.length ? join(head + ' {', parts, '}', indent) : head;
    } finally {
      ctx.seen.pop();
    }
  }

  // Builtins recognised by their internal slots.
  // Each brand check is tried only when the chain suggests it (a thrown TypeError per miss is not free).
  for (let i = 0; i < boxes.length; i++) {
    if (!inChain(boxes[i]![1])) continue;
    const b = tryCall(boxes[i]![2], o);
    if (b) return `[${boxes[i]![0]}: ${primitive(b.v, false)}]`;
  }
  const time = inChain(DateProto) ? tryCall(dateGetTime as (this: unknown) => unknown, o) : undefined;
  if (time) {
    const iso = time.v === time.v ? tryCall(dateToISO as (this: unknown) => unknown, o) : undefined;
    return iso && typeof iso.v === 'string' ? iso.v : 'Invalid Date';
  }
  // V8 counts every RegExp accessor (source, flags) as a possible side effect: the pattern is not shown.
  if (inChain(RegExpProto) && o !== RegExpProto) {
    const li = getOwn(o, 'lastIndex');
    if (li && 'value' in li && !li.enumerable) return `[${name || 'RegExp'}]`;
  }
  if (depth > MAX_DEPTH) return isArray(o) ? '[Array]' : `[${name || 'Object'}]`;

  ctx.seen.push(o);
  try {
    const mSize = inChain(MapProto) ? tryCall(mapSize, o) : undefined;
    if (mSize) {
      const parts: string[] = [];
      const it = apply(mapEntries, o, []);
      for (let i = 0; ; i++) {
        const r = apply(mapIterNext, it, []) as IteratorResult<[unknown, unknown]>;
        if (r.done) break;
        if (i >= MAX_ITEMS) {
          parts.push(`... ${(mSize.v as number) - i} more items`);
          break;
        }
        const line = walk(r.value[0], ctx, depth + 1, indent + '  ') + ' => ' + walk(r.value[1], ctx, depth + 1, indent + '  ');
        parts.push(line);
      }
      return join(`${name || 'Map'}(${mSize.v as number}) {`, parts.concat(props(o, ctx, depth, indent, noSkip)), '}', indent);
    }
    const sSize = inChain(SetProto) ? tryCall(setSize, o) : undefined;
    if (sSize) {
      const parts: string[] = [];
      const it = apply(setValues, o, []);
      for (let i = 0; ; i++) {
        const r = apply(setIterNext, it, []) as IteratorResult<unknown>;
        if (r.done) break;
        if (i >= MAX_ITEMS) {
          parts.push(`... ${(sSize.v as number) - i} more items`);
          break;
        }
        parts.push(walk(r.value, ctx, depth + 1, indent + '  '));
      }
      return join(`${name || 'Set'}(${sSize.v as number}) {`, parts.concat(props(o, ctx, depth, indent, noSkip)), '}', indent);
    }
    if (inChain(WeakMapProto) && tryCall(weakMapHas as (this: unknown) => unknown, o, {}))
      return `${name || 'WeakMap'} { <items unknown> }`;
    if (inChain(WeakSetProto) && tryCall(weakSetHas as (this: unknown) => unknown, o, {}))
      return `${name || 'WeakSet'} { <items unknown> }`;

    if (isView(o)) {
      const len = tryCall(typedLength, o);
      if (len && typeof len.v === 'number') {
        const parts: string[] = [];
        const n = len.v < MAX_ITEMS ? len.v : MAX_ITEMS;
        for (let i = 0; i < n; i++) {
          const d = getOwn(o, String(i));
          parts.push(d && 'value' in d ? walk(d.value, ctx, depth + 1, indent + '  ') : 'undefined');
        }
        if (len.v > n) parts.push(`... ${len.v - n} more items`);
        const kind = name || 'TypedArray';
        return join(`${kind}(${len.v}) [`, parts, ']', indent);
      }
    }

    if (isArray(o)) {
      const ld = getOwn(o, 'length');
      const length = ld && 'value' in ld && typeof ld.value === 'number' ? ld.value : 0;
      const parts: string[] = [];
      let holes = 0;
      let i = 0;
      for (; i < length && parts.length < MAX_ITEMS && !ctx.full; i++) {
        const d = getOwn(o, String(i));
        if (!d) {
          holes++;
          continue;
        }
        if (holes) {
          parts.push(`<${holes} empty item${holes > 1 ? 's' : ''}>`);
          holes = 0;
        }
        const item =
          'value' in d ? walk(d.value, ctx, depth + 1, indent + '  ') : d.get ? (d.set ? '[Getter/Setter]' : '[Getter]') : '[Setter]';
        charge(ctx, item.length);
        parts.push(item);
      }
      if (holes) parts.push(`<${holes} empty item${holes > 1 ? 's' : ''}>`);
      if (i < length) parts.push(`... ${length - i} more item${length - i > 1 ? 's' : ''}`);
      const extra = props(o, ctx, depth, indent, (k) => k === 'length' || isIndex(k), true);
      const open = name === 'Array' ? '[' : `${name || 'Array'}(${length}) [`;
      return join(open, parts.concat(extra), ']', indent);
    }

    if (inChain(ErrorProto)) {
      const head = '[' + errorText(o, name) + ']';
      const parts = props(o, ctx, depth, indent, (k) => k === 'stack' || k === 'message');
      return parts.length ? join(head + ' {', parts, '}', indent) : head;
    }
    if (inChain(PromiseProto)) return `${name || 'Promise'} { <state unknown> }`;
    if (o === ObjectProto) return '[Object: Object.prototype]';
    if (o === FunctionProto) return '[Function: Function.prototype]';

    const parts = props(o, ctx, depth, indent, noSkip);
    return join(prefix + '{', parts, '}', indent);
  } finally {
    ctx.seen.pop();
  }
}

/** `Name: message` of an error-like object from data properties only (no getters, no stack). */
function errorText(o: object, name: string | null): string {
  const n = dataProp(o, 'name');
  const m = dataProp(o, 'message');
  const label = typeof n === 'string' && n ? n : name || 'Error';
  return typeof m === 'string' && m ? `${label}: ${m}` : label;
}

/**
 * Render `value`. The answer starts with two characters: `V` (a result) or `T` (a thrown value:
 * `Name: message` when it has those as data properties, else its rendering), then `1` if the
 * rendering was cut short or `0`. Never throws.
 */
export function safeRender(value: unknown, thrown: boolean): string {
  const ctx: Ctx = { seen: [], size: 0, nodes: 0, full: false };
  const kind = thrown ? 'T' : 'V';
  try {
    let text: string;
    if (
      thrown &&
      value !== null &&
      (typeof value === 'object' || typeof value === 'function') &&
      typeof dataProp(value as object, 'message') === 'string'
    ) {
      const n = dataProp(value as object, 'name');
      text = (typeof n === 'string' && n ? n : 'Error') + ': ' + (dataProp(value as object, 'message') as string);
    } else {
      text = walk(value, ctx, thrown ? MAX_DEPTH - 2 : 0, '');
    }
    return kind + (ctx.full || text.length > SAFE_RENDER_MAX ? '1' : '0') + text;
  } catch {
    // A Proxy trap threw: the thrown value is not looked into.
    return kind + '0[uninspectable value]';
  }
}
