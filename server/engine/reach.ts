/**
 * Honest reach: which changes between the running version of a module and a new one a commit would
 * actually reach, decided before anything runs.
 *
 * In-place dispatch reaches every call of a dispatch point made after the commit. It cannot reach:
 * - code inside a function that registered handlers when it ran (a Fastify plugin's `app.get(…, () => …)`,
 *   an Express `routes(app)` function): the handlers it registered at start-up are closures of the
 *   running version;
 * - a changed dispatch point that cannot forward (generators, classes with `#private` members);
 * - top-level statements (`app.get(…)`, `app.use(…)`, decorators): they ran once when the module
 *   loaded, on objects the running app holds; the new version would run them on its own copies;
 * - class fields, static members and base classes (existing instances and the live class keep theirs).
 * Declarations, pure initialisers (`const TAX = 0.2`, `require(…)`), export bookkeeping and new
 * functions are fine: the new version's functions read its own module scope.
 *
 * Top-level calls with effects that would run a second time (listen, timers, process listeners,
 * exit) are reported separately (LP_ERR_PATCH_EFFECT).
 */
import type { AnyNode, ModuleDeclaration, Pattern, Statement, VariableDeclarator } from 'acorn';
import { dotName, type Analysis, type Point, type TopStatement } from './analyze';
import { exportedLocals } from './esm';

export interface ReachProblem {
  readonly line: number;
  readonly column: number;
  readonly message: string;
  /** The function concerned, if any (for mapping the line back to the TypeScript source). */
  readonly name?: string;
}

/** Whether evaluating `n` again has no effect on anything but the new version's own scope. */
function pure(n: AnyNode | null | undefined): boolean {
  if (!n) return true;
  switch (n.type) {
    case 'Literal':
    case 'Identifier':
    case 'ThisExpression':
    case 'FunctionExpression':
    case 'ArrowFunctionExpression':
      return true;
    case 'TemplateLiteral':
      return n.expressions.every(pure);
    case 'ArrayExpression':
      return n.elements.every((e) => pure(e?.type === 'SpreadElement' ? e.argument : e));
    case 'ObjectExpression':
      return n.properties.every((p) => (p.type === 'SpreadElement' ? pure(p.argument) : (!p.computed || pure(p.key)) && pure(p.value)));
    case 'UnaryExpression':
      return n.operator !== 'delete' && pure(n.argument);
    case 'BinaryExpression':
    case 'LogicalExpression':
      return pure(n.left) && pure(n.right);
    case 'ConditionalExpression':
      return pure(n.test) && pure(n.consequent) && pure(n.alternate);
    case 'MemberExpression':
      return pure(n.object) && (!n.computed || pure(n.property));
    case 'ChainExpression':
    case 'ParenthesizedExpression':
      return pure(n.expression);
    case 'SequenceExpression':
      return n.expressions.every(pure);
    case 'AssignmentExpression':
      // `exports.a = exports.b = void 0` and friends: export bookkeeping.
      return n.operator === '=' && isExportTarget(n.left) && pure(n.right);
    case 'CallExpression': {
      // keep() is the documented hand-over of top-level state: the new version gets the kept value.
      const callee = n.callee.type === 'SequenceExpression' ? n.callee.expressions[n.callee.expressions.length - 1] : n.callee;
      if ((callee.type === 'Identifier' && callee.name === 'keep') || (callee.type === 'MemberExpression' && dotName(callee) === 'keep'))
        return true;
      const c = n.callee;
      const name =
        c.type === 'Identifier'
          ? c.name
          : c.type === 'MemberExpression' && !c.computed
            ? `${c.object.type === 'Identifier' ? c.object.name : '?'}.${dotName(c)}`
            : '';
      // require(), tsc's import helpers, and a few builtins that only build values.
      if (
        /^(require|__importDefault|__importStar|__createBinding|Symbol|Symbol\.for|Object\.freeze|String|Number|Boolean|BigInt)$/.test(name)
      )
        return n.arguments.every(pure);
      return false;
    }
    case 'NewExpression':
      return (
        n.callee.type === 'Identifier' &&
        /^(Map|Set|WeakMap|WeakSet|Date|RegExp|Error|TypeError|RangeError|URL|Array|Object)$/.test(n.callee.name) &&
        n.arguments.every(pure)
      );
    default:
      return false;
  }
}

function isExportTarget(n: Pattern): boolean {
  if (n.type !== 'MemberExpression') return false;
  const o = n.object;
  if (o.type === 'Identifier' && (o.name === 'exports' || o.name === 'module')) return true;
  return o.type === 'MemberExpression' && o.object.type === 'Identifier' && o.object.name === 'module' && dotName(o) === 'exports';
}

const DECORATE = /\b__(decorate|metadata|param|esDecorate|runInitializers)\(/;

const ESM_VALUE = (name: string): string =>
  `export ${name} changed value: modules that import it hold a binding to the running version's value, which a patch cannot rebind (only exported functions and classes reach importers). Return the value from a function, or restart`;

/** Why a top-level statement that differs between the versions cannot be reached, or undefined if it can. */
function statementProblem(
  s: TopStatement,
  source: string,
  own: readonly TopStatement[],
  other: readonly TopStatement[],
  otherSource: string,
  exported?: ReadonlySet<string>,
): string | undefined {
  let n = s.node;
  const text = source.slice(n.start, n.end);
  // ES modules: imports bind the new version's own scope; export lists cannot reach importers, which
  // linked to the running version's names; `export` before a declaration is the declaration.
  if (n.type === 'ImportDeclaration' || n.type === 'ExportAllDeclaration') return undefined;
  if (n.type === 'ExportNamedDeclaration') {
    if (!n.declaration) return undefined;
    n = n.declaration;
  }
  if (n.type === 'ExportDefaultDeclaration') {
    if (/^(Function|Class|ArrowFunction)(Declaration|Expression)$/.test(n.declaration.type)) return undefined;
    return ESM_VALUE('default');
  }
  if (exported && n.type === 'VariableDeclaration') {
    for (const d of n.declarations) {
      const name = d.id.type === 'Identifier' ? d.id.name : undefined;
      if (name === undefined || !exported.has(name) || /^(Function|ArrowFunction|Class)Expression$/.test(d.init?.type ?? '')) continue;
      const twin = findDeclarator(other, name);
      if (
        twin === undefined ||
        otherSource.slice(twin.start, twin.end).replace(/\s+/g, '') !== source.slice(d.start, d.end).replace(/\s+/g, '')
      )
        return ESM_VALUE(name);
    }
  }
  if (DECORATE.test(text)) {
    return 'decorators changed: they ran once when the class was defined, and the running class keeps the metadata they gave it; restart to change routes, injection or other decorator metadata';
  }
  switch (n.type) {
    case 'FunctionDeclaration':
    case 'EmptyStatement':
    case 'ThrowStatement': // refuses the load itself (LP_ERR_PATCH_LOAD)
      return undefined;
    case 'ClassDeclaration': {
      const name = n.id.name;
      const decl = (o: TopStatement): Statement | ModuleDeclaration | null | undefined =>
        o.node.type === 'ExportNamedDeclaration' ? o.node.declaration : o.node;
      const twin = other.find((o) => {
        const d = decl(o);
        return d?.type === 'ClassDeclaration' && d.id.name === name;
      });
      if (!twin) return undefined;
      return `class ${name}: its fields, static members or base class changed; instances made before the patch and the running class keep the old ones (use keep() with a migrate, or restart)`;
    }
    case 'VariableDeclaration': {
      for (const d of n.declarations) {
        const name = d.id.type === 'Identifier' ? d.id.name : undefined;
        const twin = name === undefined ? undefined : findDeclarator(other, name);
        const same =
          twin !== undefined &&
          otherSource.slice(twin.start, twin.end).replace(/\s+/g, '') === source.slice(d.start, d.end).replace(/\s+/g, '');
        if (same) continue;
        if (d.init?.type === 'ClassExpression') {
          if (!twin) continue;
          return `class ${name}: its fields, static members or base class changed; instances made before the patch and the running class keep the old ones (use keep() with a migrate, or restart)`;
        }
        // Computed by code: fine when only the new version's functions (and export bookkeeping) use it,
        // since they read the new version's own binding; not when other top-level code used it.
        if ((!pure(d.init) || (twin?.init && !pure(twin.init))) && name !== undefined && usedAtTopLevel(name, s, [...own, ...other])) {
          return `${name} is computed by code that ran once when the module loaded (${squash(source.slice(d.start, d.end))}) and other top-level code uses what it made; the running app keeps that. Compute it inside a function, or keep it with keep(), or restart`;
        }
        if (name === undefined && !pure(d.init))
          return `a destructured top-level binding is computed by code that ran once when the module loaded (${squash(source.slice(d.start, d.end))}); restart to change it`;
      }
      return undefined;
    }
    case 'ExpressionStatement': {
      if (pure(n.expression)) return undefined;
      const e = n.expression;
      // `exports.x = …`: importers read a changed export through the canonical object's accessor.
      // `module.exports = …` replaces the object importers hold: only a pure value can be followed.
      if (e.type === 'AssignmentExpression' && isExportTarget(e.left) && !isWholeExports(e.left)) return undefined;
      if (e.type === 'AssignmentExpression' && isExportTarget(e.left) && pure(e.right)) return undefined;
      if (e.type === 'CallExpression') {
        const callee = source.slice(e.callee.start, e.callee.end);
        const first = e.arguments[0] ? source.slice(e.arguments[0].start, e.arguments[0].end) : '';
        if (callee === 'Object.defineProperty' && (first === 'exports' || first === 'module.exports')) return undefined;
        if (/(^|\.)__exportStar$|^__export$/.test(callee)) return undefined;
      }
      break;
    }
  }
  return `top-level code changed (${squash(text)}): it ran once when the module loaded, on objects the running app still uses; the new version would run it on its own copies. Change code inside functions, or restart`;
}

function isWholeExports(n: Pattern): boolean {
  return n.type === 'MemberExpression' && n.object.type === 'Identifier' && n.object.name === 'module' && dotName(n) === 'exports';
}

/** Whether top-level code other than `self` and export bookkeeping (`exports.x = name`) uses `name`. */
function usedAtTopLevel(name: string, self: TopStatement, stmts: readonly TopStatement[]): boolean {
  const re = new RegExp(`(^|[^\\w$.])${name.replace(/\$/g, '\\$')}(?![\\w$])`);
  const declares = (t: TopStatement): boolean =>
    t.node.type === 'VariableDeclaration' && t.node.declarations.some((d) => d.id.type === 'Identifier' && d.id.name === name);
  const code = (t: TopStatement): string => t.text.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`/g, '""');
  return stmts.some((t) => t !== self && !declares(t) && !/^(module\.)?exports\.[\w$]+ = [\w$]+;?$/.test(t.text) && re.test(code(t)));
}

function findDeclarator(stmts: readonly TopStatement[], name: string): VariableDeclarator | undefined {
  for (const s of stmts) {
    let n = s.node;
    if (n.type === 'ExportNamedDeclaration' && n.declaration) n = n.declaration;
    if (n.type !== 'VariableDeclaration') continue;
    for (const d of n.declarations) if (d.id.type === 'Identifier' && d.id.name === name) return d;
  }
  return undefined;
}

function squash(s: string, max = 60): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** Statements present in `a` and not in `b` (multiset difference on blanked text). */
function onlyIn(a: readonly TopStatement[], b: readonly TopStatement[]): TopStatement[] {
  const counts = new Map<string, number>();
  for (const s of b) counts.set(s.text, (counts.get(s.text) ?? 0) + 1);
  const out: TopStatement[] = [];
  for (const s of a) {
    const c = counts.get(s.text) ?? 0;
    if (c > 0) counts.set(s.text, c - 1);
    else out.push(s);
  }
  return out;
}

function pointProblem(was: Point, now: Point): string | undefined {
  const why = now.unforwardable ?? was.unforwardable;
  if (why)
    return `${now.name} changed, but ${why}: calls made through the running version cannot be forwarded to the new code; restart to change it`;
  const reg = now.registers[0] ?? was.registers[0];
  if (reg) {
    return `${now.name}() registers handlers when it runs (${reg.callee}()); it already ran, so the handlers it registered are the running version's and the new code inside it would never be reached. Move the changed handler into a top-level function and patch that, or restart`;
  }
  return undefined;
}

/** Problems that keep a commit of `now` over `was` from reaching the running program (empty: all reachable). */
export function reachProblems(was: Analysis, now: Analysis): ReachProblem[] {
  const out: ReachProblem[] = [];
  const old = new Map(was.points.map((p) => [p.key, p]));
  for (const p of now.points) {
    const o = old.get(p.key);
    if (!o || o.text === p.text || p.kind === 'class') continue;
    const why = pointProblem(o, p);
    if (why) out.push({ line: p.line, column: p.column, message: why, name: p.name });
  }
  // ES modules: exported names whose bindings importers hold.
  const exported = now.esm ? new Set([...exportedLocals(now.program).values(), ...exportedLocals(was.program).values()]) : undefined;
  for (const s of onlyIn(now.statements, was.statements)) {
    const why = statementProblem(s, now.source, now.statements, was.statements, was.source, exported);
    if (why) out.push({ line: s.line, column: s.column, message: why });
  }
  for (const s of onlyIn(was.statements, now.statements)) {
    const why = statementProblem(s, was.source, was.statements, now.statements, now.source, exported);
    if (why && !out.some((p) => p.message === why)) out.push({ line: s.line, column: s.column, message: `removed or replaced: ${why}` });
  }
  return out.sort((a, b) => a.line - b.line || a.column - b.column);
}

/** Top-level effects of a version that a commit would run a second time. */
export function effectProblems(now: Analysis): ReachProblem[] {
  return now.effects.map((e) => ({
    line: e.line,
    column: e.column,
    message: `top-level code calls ${e.what}: loading a new version would do it a second time in the running process. Wrap it in keep('…', () => …) so it runs once, or move it to a module you do not patch`,
  }));
}
