/**
 * The handler table: one entry per op in shared/ops.ts (the mapped type makes a missing op a compile
 * error), and the audit policy — which ops are too chatty to record when they succeed.
 */
import { describe, exportsOp, health, history, source, status, subscribe, versions } from './inspect';
import { restart } from './cluster';
import { abort, apply, check, commit, rollback, stage, warm } from './patch';
import { quarantine } from './quarantine';
import { auditVerify, evalOp, replClose, replOpen } from './repl';
import type { HandlerTable } from './types';

export const HANDLERS: HandlerTable = {
  describe,
  status,
  versions,
  source,
  exports: exportsOp,
  history,
  subscribe,
  health,
  check,
  stage,
  commit,
  abort,
  apply,
  rollback,
  quarantine,
  'audit-verify': auditVerify,
  eval: evalOp,
  'repl-open': replOpen,
  'repl-close': replClose,
  warm,
  restart,
};
