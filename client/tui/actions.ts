/**
 * Everything that can change the TUI's view state, as plain data. Key handlers, agent replies and
 * connection changes all become one of these and go through `reduce()` (state.ts).
 */
import type {
  AgentEvent,
  CheckResult,
  CommitResult,
  Diagnostic,
  ExportsResult,
  GenerationSummary,
  ModuleVersionInfo,
  Role,
  SourceResult,
  StatusResult,
} from '../../shared';

export type Tab = 'source' | 'exports' | 'history' | 'diff';
export const TABS: readonly Tab[] = ['source', 'exports', 'history', 'diff'];

export type Focus = 'modules' | 'main' | 'events' | 'repl';

/** Modal popups. Only one at a time; while open it has the keyboard. */
export type Popup =
  | { kind: 'help'; scroll: number }
  | { kind: 'apply'; message: string }
  /** The agent takes signed patch sets only: explain, and offer to write the draft to `path` for signing. */
  | { kind: 'signed-only'; path: string }
  | { kind: 'rollback'; choice: number }
  | { kind: 'confirm-rollback'; to: number }
  | { kind: 'confirm-quit' }
  | { kind: 'confirm-discard' }
  | { kind: 'diagnostics'; choice: number }
  | { kind: 'busy'; title: string; message: string }
  | { kind: 'message'; title: string; lines: string[]; error: boolean };

export type Action =
  | { type: 'connecting'; attempt: number }
  | { type: 'connected'; name: string; role: Role }
  | { type: 'disconnected'; reason: string; retryInMs: number }
  | { type: 'snapshot'; status: StatusResult; versions: ModuleVersionInfo[]; history: GenerationSummary[] }
  | { type: 'status'; status: StatusResult }
  | { type: 'source'; result: SourceResult }
  | { type: 'exports'; result: ExportsResult }
  | { type: 'event'; event: AgentEvent }
  | { type: 'log'; text: string }
  | { type: 'move'; delta: number; page: number }
  | { type: 'open' }
  | { type: 'tab'; tab: Tab }
  | { type: 'tabStep'; delta: number }
  | { type: 'focus'; delta: number }
  | { type: 'filterStart' }
  | { type: 'filterKey'; key: string }
  | { type: 'draftSet'; module: string; text: string; live: SourceResult }
  | { type: 'draftDiscard' }
  | { type: 'checked'; result: CheckResult }
  | { type: 'rejected'; title: string; message: string; diagnostics: Diagnostic[] }
  | { type: 'applied'; result: CommitResult; kind: 'patch' | 'rollback' }
  /** The draft was written as a patch set file for signing (or writing it failed: `error`). */
  | { type: 'exported'; path: string; modules: string[]; error?: string }
  | { type: 'popup'; popup: Popup | undefined }
  | { type: 'popupMove'; delta: number }
  | { type: 'popupKey'; key: string }
  | { type: 'jump'; diagnostic: Diagnostic }
  | { type: 'notice'; text: string | undefined }
  | { type: 'replKey'; key: string }
  | { type: 'replSubmit' }
  | { type: 'replOutput'; lines: string[]; error: boolean }
  | { type: 'quit' };
