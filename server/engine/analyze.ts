/**
 * Static analysis of one CommonJS module version (acorn): its *dispatch points*, its top-level
 * skeleton, and what its top-level code does.
 *
 * A dispatch point is a function created exactly once when the module's top level runs: a top-level
 * function declaration or function/arrow/class expression (not inside another function or a loop),
 * a method/accessor/constructor of such a class, or a method/accessor of such an object literal.
 * Each gets a key that names it by where it stands (`function greet`, `var handler`,
 * `call router.get("/users")#1`, `class Shop#total`), so the same function can be found in another
 * version of the module. The instrumenter (instrument.ts) makes every forwardable dispatch point
 * dispatch in place; reach.ts compares two versions' analyses to tell which changes a commit reaches.
 */
import {
  parse,
  type AnyNode,
  type CallExpression,
  type Expression,
  type MemberExpression,
  type ModuleDeclaration,
  type NewExpression,
  type Node,
  type ObjectExpression,
  type Pattern,
  type PrivateIdentifier,
  type Program,
  type Statement,
} from 'acorn';

/** What kind of function a dispatch point is. */
export type PointKind = 'function' | 'arrow' | 'method' | 'get' | 'set' | 'constructor' | 'class';

/** A call inside a function that hands a function of its own to something that outlives the call. */
export interface Registration {
  line: number;
  column: number;
  /** The callee as written, e.g. `app.get`. */
  callee: string;
}

export interface Point {
  readonly key: string;
  readonly kind: PointKind;
  /** Name for messages (`routes`, `Shop.total`, `router.get("/") handler`). */
  readonly name: string;
  readonly line: number;
  readonly column: number;
  readonly start: number;
  readonly end: number;
  /** Range blanked in the skeleton: the function, or the whole member definition for methods. */
  readonly outer: readonly [number, number];
  /** Source text of the whole function (change detection). */
  readonly text: string;
  /** Why calls of an older version cannot be forwarded here, if they cannot. */
  readonly unforwardable?: string;
  /** Registrations made by code inside this function (nested handlers that outlive the call). */
  readonly registers: Registration[];
  /** Whether this is an arrow function (instrumented differently: no `this`/`arguments`). */
  readonly arrow?: boolean;
  /** The name JavaScript infers for an anonymous function expression here (`const f = () => …`). */
  readonly inferredName?: string;
  /** Whether the function is a declaration statement (registered after it, not wrapped). */
  readonly declaration?: boolean;
  /**
   * Whether an object literal's value registers it (`{ total: () => … }`, see Container): the literal
   * is not wrapped, so V8 names it after its key as without livepatch.
   */
  inObject?: boolean;
}

/** A top-level class or object literal whose members are dispatch points. */
export interface Container {
  readonly kind: 'class' | 'object';
  readonly start: number;
  readonly end: number;
  /** Class declarations are registered after the statement; expressions are wrapped. */
  readonly declaration: boolean;
  /** Class point key (classes only). */
  readonly key?: string;
  readonly name?: string;
  readonly inferredName?: string;
  /** Position just inside the class body's `{` (classes only). */
  readonly bodyStart?: number;
  readonly hasConstructor?: boolean;
  readonly derived?: boolean;
  /**
   * Member runtime key (JS expression text), point key, kind (a method, an accessor, or a function
   * that is a property's value), static; for an arrow function value, the `length` JavaScript gives it.
   */
  readonly members: { keyExpr: string; pointKey: string; kind: 'method' | 'get' | 'set' | 'value'; isStatic: boolean; length?: number }[];
}

/** One statement of the module's top level, with dispatch point bodies blanked. */
export interface TopStatement {
  readonly text: string;
  readonly line: number;
  readonly column: number;
  readonly node: Statement | ModuleDeclaration;
}

/** A top-level call with an effect that outlives the module's evaluation. */
export interface TopEffect {
  readonly line: number;
  readonly column: number;
  readonly what: string;
}

export interface Analysis {
  readonly source: string;
  readonly program: Program;
  readonly points: Point[];
  readonly statements: TopStatement[];
  readonly effects: TopEffect[];
  readonly containers: Container[];
  /** Position after the directive prologue (and hashbang), where the preamble goes. */
  readonly preambleAt: number;
  /** Whether the text is an ES module (import/export syntax). */
  readonly esm: boolean;
}

/** Callee method names that register a handler which outlives the call (routes, hooks, plugins). */
const REGISTER_VERBS = new Set([
  'get',
  'post',
  'put',
  'patch',
  'delete',
  'del',
  'head',
  'options',
  'all',
  'route',
  'use',
  'param',
  'register',
  'addHook',
  'decorate',
  'decorateRequest',
  'decorateReply',
  'setErrorHandler',
  'setNotFoundHandler',
  'addContentTypeParser',
  'setReplySerializer',
  'setValidatorCompiler',
  'setSerializerCompiler',
  'after',
  'onClose',
]);
const PROCESS_LISTEN = new Set(['on', 'once', 'addListener', 'prependListener', 'prependOnceListener']);
const TIMERS = new Set(['setInterval', 'setTimeout', 'setImmediate']);

/** A function node: declaration (named, or anonymous after `export default`), expression or arrow. */
export type FunctionNode = Extract<AnyNode, { type: 'FunctionDeclaration' | 'FunctionExpression' | 'ArrowFunctionExpression' }>;
type ClassNode = Extract<AnyNode, { type: 'ClassDeclaration' | 'ClassExpression' }>;

export const isFn = (n: AnyNode | null | undefined): n is FunctionNode =>
  !!n && (n.type === 'FunctionExpression' || n.type === 'ArrowFunctionExpression' || n.type === 'FunctionDeclaration');
const isLoop = (n: AnyNode): boolean => /^(For|ForIn|ForOf|While|DoWhile)Statement$/.test(n.type);

/** Whether a property value of a node is itself a node (every ESTree node has a string `type`). */
const isNode = (v: unknown): v is AnyNode => typeof v === 'object' && v !== null && 'type' in v && typeof v.type === 'string';

/** Child nodes of `n` in source order, found by property (every node kind, without a table of them). */
export function children(n: AnyNode): AnyNode[] {
  const out: AnyNode[] = [];
  // Object.entries types an interface's values as `any`; each value is checked before it is used.
  for (const [k, v] of Object.entries(n) as [string, unknown][]) {
    if (k === 'type' || k === 'loc' || k === 'start' || k === 'end') continue;
    if (Array.isArray(v)) {
      for (const c of v) if (isNode(c)) out.push(c);
    } else if (isNode(v)) out.push(v);
  }
  return out.sort((a, b) => a.start - b.start);
}

/** The name after the dot of a non-computed member expression (`a.b`, `this.#b`), else undefined. */
export function dotName(m: MemberExpression): string | undefined {
  if (m.computed) return undefined;
  return m.property.type === 'Identifier' || m.property.type === 'PrivateIdentifier' ? m.property.name : undefined;
}

/**
 * Line and column (1-based) of an offset, from a table of line starts built once per analysis:
 * cheaper than having the parser track locations for every node of every module at start-up.
 */
export function locator(source: string): (offset: number) => { line: number; column: number } {
  const starts = [0];
  for (let i = source.indexOf('\n'); i >= 0; i = source.indexOf('\n', i + 1)) starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo]! + 1 };
  };
}

/**
 * Parse module text: CommonJS (a function body: top-level `return` allowed) or, with `esm`, an ES
 * module. Throws on syntax errors.
 */
export function parseModule(source: string, esm = false): Program {
  return esm
    ? parse(source, { ecmaVersion: 'latest', sourceType: 'module', allowHashBang: true })
    : parse(source, { ecmaVersion: 'latest', sourceType: 'script', allowReturnOutsideFunction: true, allowHashBang: true });
}

function squash(s: string, max = 80): string {
  const t = s.replace(/\s+/g, '');
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** Whether no property after `p` in `obj` can set key `k` again (a spread or computed key might). */
function lastWithKey(obj: ObjectExpression, p: Node, k: string): boolean {
  const later = obj.properties.slice(obj.properties.indexOf(p as (typeof obj.properties)[number]) + 1);
  return later.every((q) => q.type === 'Property' && !q.computed && keyName(q.key, false) !== k);
}

/** `length` of a function with these parameters (those before the first default or rest). */
export function paramLength(params: readonly Pattern[]): number {
  let n = 0;
  for (const q of params) {
    if (q.type === 'AssignmentPattern' || q.type === 'RestElement') break;
    n++;
  }
  return n;
}

/** Static name of a property/method key, or undefined for a computed key other than `Symbol.x`. */
export function keyName(key: Expression | PrivateIdentifier, computed: boolean): string | undefined {
  if (!computed) {
    if (key.type === 'Identifier') return key.name;
    if (key.type === 'Literal') return String(key.value);
    if (key.type === 'PrivateIdentifier') return `#${key.name}`;
    return undefined;
  }
  if (key.type === 'Literal' && (typeof key.value === 'string' || typeof key.value === 'number')) return String(key.value);
  if (
    key.type === 'MemberExpression' &&
    !key.computed &&
    key.object.type === 'Identifier' &&
    key.object.name === 'Symbol' &&
    key.property.type === 'Identifier'
  ) {
    return `@@${key.property.name}`;
  }
  return undefined;
}

/** Analyse one module version (an ES module with `esm`). Throws acorn's SyntaxError for text that does not parse. */
export function analyze(source: string, esm = false): Analysis {
  const program = parseModule(source, esm);
  const points: Point[] = [];
  const effects: TopEffect[] = [];
  const containers: Container[] = [];
  const seen = new Map<string, number>();
  const text = (n: Node): string => source.slice(n.start, n.end);
  const at = locator(source);
  const uniq = (base: string): string => {
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    return n === 1 ? base : `${base}#${n}`;
  };

  /** Registrations made inside function `fn` (any depth). */
  const registrationsIn = (fn: AnyNode): Registration[] => {
    const out: Registration[] = [];
    const walk = (n: AnyNode): void => {
      if (n.type === 'CallExpression' || n.type === 'NewExpression') {
        const c = n.callee;
        const hasFnArg = n.arguments.some(
          (a) =>
            isFn(a) || (a.type === 'ObjectExpression' && a.properties.some((p) => p.type === 'Property' && (isFn(p.value) || p.method))),
        );
        let reg = false;
        if (hasFnArg && c.type === 'MemberExpression' && !c.computed && c.property.type === 'Identifier') {
          const obj = c.object;
          if (
            REGISTER_VERBS.has(c.property.name) &&
            (obj.type === 'Identifier' || obj.type === 'ThisExpression' || obj.type === 'MemberExpression')
          )
            reg = true;
          if (PROCESS_LISTEN.has(c.property.name) && obj.type === 'Identifier' && obj.name === 'process') reg = true;
        }
        if (hasFnArg && c.type === 'Identifier' && c.name === 'setInterval') reg = true;
        if (reg) out.push({ ...at(n.start), callee: squash(text(c), 60) });
      }
      for (const k of children(n)) walk(k);
    };
    for (const k of children(fn)) walk(k);
    return out;
  };

  const addPoint = (
    fn: FunctionNode | ClassNode,
    key: string,
    kind: PointKind,
    name: string,
    unforwardable?: string,
    outer: Node = fn,
    inferredName?: string,
  ): Point => {
    let why = unforwardable;
    if (!why && isFn(fn) && fn.generator) why = 'it is a generator function';
    const first = isFn(fn) && fn.body.type === 'BlockStatement' ? fn.body.body[0] : undefined;
    if (!why && kind === 'arrow' && first?.type === 'ExpressionStatement' && first.directive === 'use strict')
      why = "it has its own 'use strict' directive";
    const p: Point = {
      key,
      kind,
      name,
      ...at(fn.start),
      start: fn.start,
      end: fn.end,
      outer: [outer.start, outer.end],
      text: text(fn),
      registers: kind === 'class' ? [] : registrationsIn(fn),
      ...(why ? { unforwardable: why } : {}),
      ...(kind === 'arrow' ? { arrow: true } : {}),
      ...(inferredName !== undefined && !fn.id ? { inferredName } : {}),
      // `export default function () {}` has no name to register it by: it is treated as an expression.
      ...((fn.type === 'FunctionDeclaration' || fn.type === 'ClassDeclaration') && fn.id ? { declaration: true } : {}),
    };
    points.push(p);
    return p;
  };
  const keyExpr = (k: string): string => (k.startsWith('@@') ? `Symbol.${k.slice(2)}` : JSON.stringify(k));

  const visitClass = (cls: ClassNode, label: string, infer?: string): void => {
    const name = cls.id?.name ?? infer ?? '';
    const classKey = uniq(
      cls.type === 'ClassDeclaration' && cls.id
        ? `class ${cls.id.name}`
        : label.startsWith('var ')
          ? `class ${label.slice(4)}`
          : `class(${label})`,
    );
    const members = cls.body.body;
    const privateNames = members.some((m) => m.type !== 'StaticBlock' && m.key.type === 'PrivateIdentifier');
    const why = privateNames ? 'its class has #private members, which instances of older versions do not carry' : undefined;
    const cp = addPoint(cls, classKey, 'class', name || classKey, why, cls, infer);
    const container: Container = {
      kind: 'class',
      start: cls.start,
      end: cls.end,
      declaration: cls.type === 'ClassDeclaration' && !!cls.id,
      key: classKey,
      name,
      ...(cp.inferredName !== undefined ? { inferredName: cp.inferredName } : {}),
      bodyStart: cls.body.start + 1,
      hasConstructor: members.some((m) => m.type === 'MethodDefinition' && m.kind === 'constructor'),
      derived: !!cls.superClass,
      members: [],
    };
    for (const m of members) {
      if (m.type === 'MethodDefinition') {
        const k = keyName(m.key, m.computed);
        const isPrivate = m.key.type === 'PrivateIdentifier';
        const kind: PointKind = m.kind === 'constructor' ? 'constructor' : m.kind === 'get' ? 'get' : m.kind === 'set' ? 'set' : 'method';
        const mk =
          m.kind === 'constructor'
            ? `${classKey}#constructor`
            : `${classKey}${m.static ? '.' : '#'}${m.kind === 'get' || m.kind === 'set' ? `${m.kind} ` : ''}${k ?? `[${squash(text(m.key), 40)}]`}`;
        const un = why ?? (k === undefined ? 'its name is a computed key' : isPrivate ? 'it is a #private method' : undefined);
        const p = addPoint(m.value, uniq(mk), kind, `${name || classKey}.${k ?? '[computed]'}`, un, m);
        if (!un && kind !== 'constructor')
          container.members.push({ keyExpr: keyExpr(k!), pointKey: p.key, kind: kind as 'method' | 'get' | 'set', isStatic: !!m.static });
      }
      // Field initialisers and static blocks are part of the class's skeleton (see reach.ts).
    }
    if (!why) containers.push(container);
  };

  const visitObject = (obj: ObjectExpression, label: string, inFn: boolean, inLoop: boolean): void => {
    const container: Container = { kind: 'object', start: obj.start, end: obj.end, declaration: false, members: [] };
    for (const p of obj.properties) {
      if (p.type !== 'Property') {
        visit(p, label, inFn, inLoop);
        continue;
      }
      const k = keyName(p.key, p.computed);
      if (p.computed) visit(p.key, label, inFn, inLoop);
      // A method's or accessor's value is always a function expression; isFn() says so to the compiler.
      if ((p.method || p.kind === 'get' || p.kind === 'set') && !inFn && !inLoop && isFn(p.value)) {
        const kind: PointKind = p.kind === 'get' ? 'get' : p.kind === 'set' ? 'set' : 'method';
        const un = k === undefined ? 'its name is a computed key' : undefined;
        const pt = addPoint(
          p.value,
          uniq(`${label}/{${kind === 'method' ? '' : `${kind} `}${k ?? squash(text(p.key), 40)}}`),
          kind,
          k ?? '[computed]',
          un,
          p,
        );
        if (!un)
          container.members.push({ keyExpr: keyExpr(k!), pointKey: pt.key, kind: kind as 'method' | 'get' | 'set', isStatic: false });
      } else {
        const before = points.length;
        visit(
          p.value,
          `${label}/${k ?? `[${squash(text(p.key), 40)}]`}`,
          inFn,
          inLoop,
          !p.computed && k !== undefined && !k.startsWith('@@') ? k : undefined,
        );
        // A function that is the property's value is registered through the object (so it keeps the
        // name V8 gives it) when nothing after it in the literal can replace that property.
        const added = points[before];
        const fn = p.value;
        if (
          added !== undefined &&
          isFn(fn) &&
          added.start === fn.start &&
          added.end === fn.end &&
          !added.unforwardable &&
          !p.computed &&
          k !== undefined &&
          k !== '__proto__' &&
          lastWithKey(obj, p, k)
        ) {
          added.inObject = true;
          container.members.push({
            keyExpr: keyExpr(k),
            pointKey: added.key,
            kind: 'value',
            isStatic: false,
            ...(added.arrow ? { length: paramLength(fn.params) } : {}),
          });
        }
      }
    }
    if (container.members.length > 0) containers.push(container);
  };

  /** Walk top-level code; `inFn`/`inLoop` mark code that runs more than once or later. */
  const visit = (n: AnyNode | null | undefined, label: string, inFn: boolean, inLoop: boolean, infer?: string): void => {
    if (!n) return;
    const top = !inFn && !inLoop;
    switch (n.type) {
      case 'FunctionDeclaration':
      case 'FunctionExpression':
      case 'ArrowFunctionExpression': {
        if (top) {
          const key = n.type === 'FunctionDeclaration' && n.id ? uniq(`function ${n.id.name}`) : uniq(label);
          const name = n.id?.name ?? infer ?? label.replace(/^(var|set|call) /, '');
          addPoint(n, key, n.type === 'ArrowFunctionExpression' ? 'arrow' : 'function', name, undefined, n, infer);
          return;
        }
        for (const c of children(n)) visit(c, label, true, inLoop);
        return;
      }
      case 'ClassDeclaration':
      case 'ClassExpression':
        if (top) {
          if (n.superClass) visit(n.superClass, label, inFn, inLoop);
          visitClass(n, n.type === 'ClassDeclaration' && n.id ? `class ${n.id.name}` : label, infer);
          // Field initialisers run per instance / once per class: walk them as code inside a function.
          for (const m of n.body.body) if (m.type !== 'MethodDefinition') for (const c of children(m)) visit(c, label, true, inLoop);
          return;
        }
        for (const c of children(n)) visit(c, label, true, inLoop);
        return;
      case 'ObjectExpression':
        visitObject(n, label, inFn, inLoop);
        return;
      case 'ExportDefaultDeclaration':
        visit(n.declaration, 'export default', inFn, inLoop, 'default');
        return;
      case 'VariableDeclarator':
        visit(n.id, label, inFn, inLoop);
        visit(
          n.init,
          n.id.type === 'Identifier' ? `var ${n.id.name}` : `var ${squash(text(n.id), 40)}`,
          inFn,
          inLoop,
          n.id.type === 'Identifier' ? n.id.name : undefined,
        );
        return;
      case 'AssignmentExpression':
        visit(n.left, label, inFn, inLoop);
        visit(
          n.right,
          `set ${squash(text(n.left), 60)}`,
          inFn,
          inLoop,
          n.left.type === 'Identifier' && n.operator === '=' ? n.left.name : undefined,
        );
        return;
      case 'CallExpression':
      case 'NewExpression': {
        if (top) recordEffect(n);
        const lits = n.arguments.flatMap((a) => (a.type === 'Literal' && typeof a.value === 'string' ? [JSON.stringify(a.value)] : []));
        const callLabel = `${n.type === 'NewExpression' ? 'new' : 'call'} ${squash(text(n.callee), 60)}(${lits.join(',')})`;
        visit(n.callee, label, inFn, inLoop);
        n.arguments.forEach((a, i) => visit(a, `${callLabel}#${i}`, inFn, inLoop));
        return;
      }
      default: {
        const loop = inLoop || isLoop(n);
        for (const c of children(n))
          visit(c, n.type === 'Program' || /Statement$|Declaration$|Block/.test(n.type) ? label : `${label}>${n.type}`, inFn, loop);
      }
    }
  };

  const recordEffect = (n: CallExpression | NewExpression): void => {
    const c = n.callee;
    let what: string | undefined;
    if (c.type === 'Identifier' && TIMERS.has(c.name)) what = `${c.name}()`;
    else if (c.type === 'MemberExpression' && !c.computed && c.property.type === 'Identifier') {
      const prop = c.property.name;
      const obj = c.object;
      if (
        obj.type === 'Identifier' &&
        obj.name === 'process' &&
        (PROCESS_LISTEN.has(prop) || prop === 'exit' || prop === 'abort' || prop === 'kill')
      )
        what = `process.${prop}()`;
      else if (prop === 'listen') what = `${squash(text(c), 60)}()`;
      else if (obj.type === 'Identifier' && (obj.name === 'timers' || obj.name === 'globalThis') && TIMERS.has(prop))
        what = `${obj.name}.${prop}()`;
    }
    if (what) effects.push({ ...at(n.start), what });
  };

  visit(program, 'top', false, false);

  // Directive prologue: the preamble goes after it so "use strict" stays a directive.
  let preambleAt = 0;
  for (const s of program.body) {
    if (s.type === 'ExpressionStatement' && typeof s.directive === 'string') preambleAt = s.end;
    else break;
  }
  if (preambleAt === 0 && source.startsWith('#!')) {
    const nl = source.indexOf('\n');
    preambleAt = nl < 0 ? source.length : nl;
  }

  const statements = program.body.map((s) => ({ text: blank(source, s, points), ...at(s.start), node: s }));
  return { source, program, points, statements, effects, containers, preambleAt, esm };
}

/**
 * The text of `node` with every dispatch point inside it replaced by its key, and classes reduced to
 * their skeleton (methods removed: they are compared as points of their own).
 */
export function blank(source: string, node: Node, points: readonly Point[]): string {
  let out = '';
  let pos = node.start;
  const inside = points
    .filter((p) => p.kind !== 'class' && p.outer[0] >= node.start && p.outer[1] <= node.end)
    .sort((a, b) => a.outer[0] - b.outer[0]);
  for (const p of inside) {
    if (p.outer[0] < pos) continue;
    out += source.slice(pos, p.outer[0]);
    out += p.kind === 'function' || p.kind === 'arrow' ? `ƒ(${p.key})` : '';
    pos = p.outer[1];
  }
  out += source.slice(pos, node.end);
  // tsc's isolated-module emit guards decorator metadata types (`typeof (_a = typeof X !== "undefined" && X) === "function" ? _a : Object`)
  // where a whole-program build writes `X`: the same source, so the same skeleton.
  return out
    .replace(/\s+/g, ' ')
    .replace(/typeof \(_\w+ = typeof ([\w$.]+) !== "undefined" && \1\) === "function" \? _\w+ : Object/g, '$1')
    .trim();
}
