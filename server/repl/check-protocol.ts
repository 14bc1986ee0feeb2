/** Messages between the REPL's main-thread checker and its type-check worker. */
import type { Diagnostic } from '../../shared/patch';

/** Check `file` (a session's virtual file); report diagnostics inside [inputStart, inputEnd). */
export interface CheckRequest {
  type: 'check';
  id: number;
  root: string;
  file: string;
  inputStart: number;
  inputEnd: number;
  /** Absolute path → in-memory text: the prelude, the session file, patched module sources. */
  files: Record<string, { text: string; version: string }>;
}

export type CheckReply = { id: number; ok: true; diagnostics: Diagnostic[] } | { id: number; ok: false; message: string };
