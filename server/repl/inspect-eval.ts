/**
 * Side-effect-free evaluation for read and patch roles: V8's debug-evaluate with throwOnSideEffect,
 * through a node:inspector session connected to this same process. V8 refuses (before it happens) any
 * write to an object the expression did not create, any call into a native function not known to be
 * pure, and so all I/O; the refusal becomes LP_ERR_EVAL_SIDE_EFFECT. Live modules are reachable through
 * `globalThis.__livepatch_mod(id)`, a lookup in a snapshot of the require cache (no loading).
 */
import * as inspector from 'node:inspector';
import { LivepatchError } from '../../shared/errors';

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
let table: Record<string, unknown> = Object.create(null);
let taken: unknown;
let session: inspector.Session | undefined;

function install(): inspector.Session {
  if (session) return session;
  const accessor = (id: string): unknown => {
    const m = table[id];
    if (m === undefined) throw new Error(`not a loaded live module: ${id}`);
    return m;
  };
  Object.defineProperty(accessor, 'take', { value: (v: unknown) => void (taken = v) });
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

/** The real value behind a remote object (objects are handed over by a trusted call, not by user code). */
function valueOf(s: inspector.Session, o: RemoteObject): unknown {
  if (o.objectId) {
    taken = undefined;
    post(s, 'Runtime.callFunctionOn', { objectId: o.objectId, functionDeclaration: `function () { globalThis.${MOD_GLOBAL}.take(this); }` });
    const v = taken;
    taken = undefined;
    return v;
  }
  if (o.type === 'undefined') return undefined;
  if (o.unserializableValue !== undefined) {
    const u = o.unserializableValue;
    if (u.endsWith('n')) return BigInt(u.slice(0, -1));
    return u === '-0' ? -0 : Number(u);
  }
  return o.value;
}

/**
 * Evaluate `js` (a script; its completion value is the result) without side effects, with `modules`
 * as what `mod(id)` sees. Throws LivepatchError LP_ERR_EVAL_SIDE_EFFECT / _TIMEOUT, or { thrown }.
 */
export function evaluatePure(js: string, modules: Record<string, unknown>, timeoutMs: number): unknown {
  const s = install();
  table = modules;
  try {
    const expression = `{ const mod = globalThis.${MOD_GLOBAL};\n${js}\n}`;
    const { err, res } = post<EvaluateResult>(s, 'Runtime.evaluate', {
      expression,
      throwOnSideEffect: true,
      timeout: timeoutMs,
      objectGroup: GROUP,
      silent: true,
    });
    if (err || !res) {
      if (err && /terminated/i.test(err.message)) throw new LivepatchError('LP_ERR_EVAL_TIMEOUT', `evaluation was interrupted after ${timeoutMs} ms`);
      throw new LivepatchError('LP_ERR_INTERNAL', 'the side-effect-free evaluator failed');
    }
    if (res.exceptionDetails) {
      const ex = res.exceptionDetails.exception ?? res.result;
      if (ex.className === 'EvalError' && /side-effect/i.test(ex.description ?? '')) {
        throw new LivepatchError('LP_ERR_EVAL_SIDE_EFFECT', 'the expression may have side effects (assignment, I/O or an impure call); only admins may run it');
      }
      throw { thrown: valueOf(s, ex) };
    }
    return valueOf(s, res.result);
  } finally {
    table = Object.create(null);
    post(s, 'Runtime.releaseObjectGroup', { objectGroup: GROUP });
  }
}
