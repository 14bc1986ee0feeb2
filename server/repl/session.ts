/**
 * A REPL session's state: who owns it, the generation it is pinned to, the TypeScript declarations
 * accumulated from its successful inputs (what the type checker sees before each new input) and,
 * for admins, its vm context. Inputs are serialised so declarations apply in order.
 */
import { join } from 'node:path';
import { LivepatchError } from '../../shared/errors';
import type { LiveModules } from './modules';
import { VmSession } from './vm-session';

/** Accumulated declarations beyond this size are refused (open a new session). */
const MAX_HISTORY = 1024 * 1024;

export class ReplSession {
  readonly id: string;
  /** Connection id of the owner. */
  readonly owner: string;
  readonly generation: number | undefined;
  /** Absolute path of the session's virtual TypeScript file (under the root so relative imports resolve). */
  readonly file: string;
  /** Text of every input that ran successfully, in order. */
  history = '';
  /** Lets go of the session's hold on its pinned generation (set when pinned). */
  release: () => void = () => undefined;
  #version = 0;
  #vm: VmSession | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(id: string, owner: string, root: string, generation?: number) {
    this.id = id;
    this.owner = owner;
    this.generation = generation;
    this.file = join(root, `__livepatch_repl_${id}.ts`);
  }

  /** The virtual file for checking `input` after the history, and where the input sits in it. */
  fileFor(input: string): { text: string; version: string; inputStart: number; inputEnd: number } {
    if (this.history.length + input.length > MAX_HISTORY) {
      throw new LivepatchError('LP_ERR_EVAL_SESSION', 'this REPL session holds too much history; open a new session');
    }
    const inputStart = this.history.length;
    // `export {}` makes the file a module, so session names never clash with other sessions' files.
    const text = `${this.history}${input}\n;export {};\n`;
    return { text, version: String(++this.#version), inputStart, inputEnd: inputStart + input.length };
  }

  /** Record an input that ran, so later inputs type-check against its declarations. */
  remember(input: string): void {
    this.history += `${input}\n;\n`;
  }

  /** The admin vm context, created on first use. */
  vm(modules: LiveModules): VmSession {
    this.#vm ??= new VmSession(modules);
    return this.#vm;
  }

  /** Run `fn` after every earlier input of this session settled. */
  enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}
