/**
 * Side-effect-free evaluation for read and patch roles: V8's debug-evaluate with throwOnSideEffect,
 * through a node:inspector session connected to this same process. V8 refuses (before it happens) any
 * write to an object the expression did not create, any call into a native function not known to be
 * pure, and so all I/O; the refusal becomes LP_ERR_EVAL_SIDE_EFFECT. Live modules are reachable through
 * `globalThis.__livepatch_mod(id)`, a lookup in a snapshot of the require cache (no loading).
 *
 * The input's value never leaves that evaluation as an object: the input runs inside a wrapper that
 * catches what it throws and renders its completion value (or the thrown value) with safeRender, still
 * under the side-effect check, so what comes back is a string. Handing the object itself back would
 * not be safe: the inspector describes an Error by reading its `stack`, `name` and `message` (getters,
 * the app's Error.prepareStackTrace) outside the check, and any later rendering or `.then` lookup on the
 * host side would run the value's own code unchecked.
 */
import { randomBytes } from 'node:crypto';
import * as inspector from 'node:inspector';
import * as ts from 'typescript';
import { LivepatchError } from '../../shared/errors';
import { safeRender } from './safe-render';

/** The global accessor's name (installed once, non-enumerable). */
export const MOD_GLOBAL = '__livepatch_mod';

interface RemoteObject {
  type: string;
  subtype?: string;
  className?: string;
  value?: unknown;
  unserializableValue?: string;
  description?: string;
  objectId?: string;
}

interface EvaluateResult {
  result: RemoteObject;
  exceptionDetails?: { exception?: RemoteObject; text?: string };
}

const GROUP = 'livepatch-repl';
let table = Object.create(null) as Record<string, unknown>;
let session: inspector.Session | undefined;

function install(): inspector.Session {
  if (session) return session;
  const accessor = (id: string): unknown => {
    const m = table[id];
    if (m === undefined) throw new Error(`not a loaded live module: ${id}`);
    return m;
  };
  Object.defineProperty(accessor, 'render', { value: safeRender });
  Object.defineProperty(globalThis, MOD_GLOBAL, { value: accessor, enumerable: false, configurable: true, writable: false });
  session = new inspector.Session();
  session.connect();
  return session;
}

/** Post synchronously: an in-process inspector session answers before post() returns. */
function post<T>(s: inspector.Session, method: string, params: object): { err: Error | null; res: T | undefined } {
  let out: { err: Error | null; res: T | undefined } | undefined;
  s.post(method, params, (err, res) => {
    out = { err, res: res as T | undefined };
  });
  if (!out) throw new LivepatchError('LP_ERR_INTERNAL', 'the inspector did not answer synchronously');
  return out;
}

/** What a side-effect-free evaluation produced, already rendered. */
export interface PureResult {
  /** The input threw: `text` is the thrown value's `Name: message` or its rendering. */
  thrown: boolean;
  text: string;
  /** The rendering was cut short (size or node budget). */
  truncated: boolean;
}

const WRAPPER_FAULT = 'the input could not be wrapped for side-effect-free evaluation';

/**
 * Rewrite `js` so every expression statement outside functions and classes stores its value in
 * `slot`: the script's completion value (what a REPL shows) becomes a variable the wrapper can hand
 * to the renderer. Returns the rewritten text and the number of top-level statements; throws when
 * `js` does not parse on its own (then it could not be kept inside the wrapper either).
 */
function captureCompletion(js: string, slot: string): { text: string; statements: number; topLevelAwait: boolean } {
  const sf = ts.createSourceFile('input.js', js, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
  const diags = (sf as unknown as { parseDiagnostics?: unknown[] }).parseDiagnostics ?? [];
  if (diags.length) throw new LivepatchError('LP_ERR_INTERNAL', WRAPPER_FAULT);
  let topLevelAwait = false;
  const findAwait = (node: ts.Node): void => {
    if (ts.isAwaitExpression(node) || (ts.isForOfStatement(node) && node.awaitModifier)) topLevelAwait = true;
    else if (!ts.isFunctionLike(node)) ts.forEachChild(node, findAwait);
  };
  sf.statements.forEach(findAwait);
  const edits: { start: number; end: number; text: string }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isExpressionStatement(node)) {
      const e = node.expression;
      edits.push({ start: node.getStart(sf), end: node.end, text: `${slot} = (${js.slice(e.getStart(sf), e.end)});` });
      return;
    }
    // Completion values come from statements only: never look inside functions, classes or expressions.
    if (ts.isFunctionLike(node) || ts.isClassLike(node) || ts.isExpression(node) || ts.isVariableDeclarationList(node)) return;
    ts.forEachChild(node, visit);
  };
  sf.statements.forEach(visit);
  let text = js;
  for (let i = edits.length - 1; i >= 0; i--) text = text.slice(0, edits[i]!.start) + edits[i]!.text + text.slice(edits[i]!.end);
  return { text, statements: sf.statements.length, topLevelAwait };
}

/**
 * The expression sent to V8: the input inside `try`, its completion value (or what it threw) rendered
 * by safeRender as the block's last statement. The wrapper is parsed back and its shape checked, so
 * an input that somehow closed a brace of its own could not end up outside the `try` or after the
 * render call. Null when the input awaits at top level (not possible without running it as a promise).
 */
function wrap(js: string): string | null {
  const n = randomBytes(6).toString('hex');
  const [v, t, e, r] = ['v', 't', 'e', 'r'].map((x) => `__lp_${x}_${n}`) as [string, string, string, string];
  const body = captureCompletion(js, v);
  if (body.topLevelAwait) return null;
  const text =
    `{ const mod = globalThis.${MOD_GLOBAL}; const ${r} = mod.render; let ${v}; let ${t} = false;\n` +
    `try {\n${body.text}\n} catch (${e}) { ${t} = true; ${v} = ${e}; }\n` +
    `${r}(${v}, ${t});\n}`;
  const sf = ts.createSourceFile('wrapped.js', text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
  const diags = (sf as unknown as { parseDiagnostics?: unknown[] }).parseDiagnostics ?? [];
  const outer = sf.statements[0];
  const inner = outer && ts.isBlock(outer) ? outer.statements : undefined;
  const tryStmt = inner?.[4];
  const last = inner?.[5];
  const ok =
    diags.length === 0 &&
    sf.statements.length === 1 &&
    inner?.length === 6 &&
    tryStmt !== undefined &&
    ts.isTryStatement(tryStmt) &&
    tryStmt.tryBlock.statements.length === body.statements &&
    tryStmt.catchClause?.variableDeclaration?.name.getText(sf) === e &&
    tryStmt.catchClause.block.statements.length === 2 &&
    !tryStmt.finallyBlock &&
    last !== undefined &&
    ts.isExpressionStatement(last) &&
    last.expression.getText(sf) === `${r}(${v}, ${t})`;
  if (!ok) throw new LivepatchError('LP_ERR_INTERNAL', WRAPPER_FAULT);
  return text;
}

/**
 * Evaluate `js` (a script; its completion value is the result) without side effects, with `modules`
 * as what `mod(id)` sees, and render the value or what it threw inside the same evaluation. Throws
 * LivepatchError LP_ERR_EVAL_SIDE_EFFECT / _TIMEOUT.
 */
export function evaluatePure(js: string, modules: Record<string, unknown>, timeoutMs: number): PureResult {
  const expression = wrap(js);
  if (expression === null) return { thrown: true, text: 'SyntaxError: await is not available to read-only evaluation', truncated: false };
  const s = install();
  table = modules;
  try {
    const { err, res } = post<EvaluateResult>(s, 'Runtime.evaluate', {
      expression,
      throwOnSideEffect: true,
      timeout: timeoutMs,
      objectGroup: GROUP,
      silent: true,
    });
    if (err || !res) {
      if (err && /terminated/i.test(err.message))
        throw new LivepatchError('LP_ERR_EVAL_TIMEOUT', `evaluation was interrupted after ${timeoutMs} ms`);
      throw new LivepatchError('LP_ERR_INTERNAL', 'the side-effect-free evaluator failed');
    }
    if (res.exceptionDetails) {
      // Whatever the input throws is caught by the wrapper: what arrives here comes from V8 itself.
      const ex = res.exceptionDetails.exception ?? res.result;
      if (ex.className === 'EvalError' && /side-effect/i.test(ex.description ?? '')) {
        throw new LivepatchError(
          'LP_ERR_EVAL_SIDE_EFFECT',
          'the expression may have side effects (assignment, I/O or an impure call); only admins may run it',
        );
      }
      // A compile error (e.g. `await` outside async code): render V8's error under the check too.
      return { thrown: true, text: renderRemote(s, ex), truncated: false };
    }
    const out = res.result.value;
    if (res.result.type !== 'string' || typeof out !== 'string' || (out[0] !== 'V' && out[0] !== 'T')) {
      throw new LivepatchError('LP_ERR_INTERNAL', 'the side-effect-free evaluator gave no rendering');
    }
    return { thrown: out[0] === 'T', truncated: out[1] === '1', text: out.slice(2) };
  } finally {
    table = Object.create(null) as Record<string, unknown>;
    post(s, 'Runtime.releaseObjectGroup', { objectGroup: GROUP });
  }
}

/** Render an exception object the inspector holds, under the side-effect check, as a thrown value. */
function renderRemote(s: inspector.Session, ex: RemoteObject): string {
  if (!ex.objectId) return typeof ex.value === 'string' ? ex.value : 'uninspectable thrown value';
  const { res } = post<EvaluateResult>(s, 'Runtime.callFunctionOn', {
    objectId: ex.objectId,
    functionDeclaration: `function () { return globalThis.${MOD_GLOBAL}.render(this, true); }`,
    throwOnSideEffect: true,
    returnByValue: true,
    silent: true,
    objectGroup: GROUP,
  });
  const out = res && !res.exceptionDetails ? res.result.value : undefined;
  return typeof out === 'string' && out[0] === 'T' ? out.slice(2) : 'uninspectable thrown value';
}
