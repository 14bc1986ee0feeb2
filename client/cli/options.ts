/**
 * Options every networked command shares (token file, JSON output, timeout, TLS) and the one way the
 * CLI, the REPL and the TUI open an authenticated connection from them. The token comes from
 * `--token-file` or LIVEPATCH_TOKEN only: a secret on argv would leak through `ps` and shell history.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { AgentClient, resolveToken } from '../connection';
import { readPatchArgs } from '../patch-files';
import { explainConnectError } from './connect-errors';
import { LivepatchError, type PatchSet } from '../../shared';

/** Options shared by every command that talks to an agent (also used by `eval`, `repl`, `attach`). */
export interface CommonOptions {
  /** File holding the token (wins over LIVEPATCH_TOKEN). */
  tokenFile?: string;
  /** Print only JSON on stdout. */
  json?: boolean;
  /** Connect/handshake timeout and default per-request timeout (ms). */
  timeoutMs?: number;
  /** Connect with wss://. */
  tls?: boolean;
  /** Path of a PEM CA bundle to trust for wss://. */
  ca?: string;
}

/**
 * Resolve the token and connect to `target`. Throws LivepatchError (LP_ERR_AUTH_NO_TOKEN,
 * LP_ERR_CONN_*, LP_ERR_AUTH_*, LP_ERR_PROTO_VERSION) so callers can map it to an exit code.
 */
export async function connectFromOptions(target: string, opts: CommonOptions): Promise<AgentClient> {
  const token = resolveToken(opts.tokenFile);
  let ca: Buffer | undefined;
  if (opts.ca) {
    try {
      ca = readFileSync(opts.ca);
    } catch (e) {
      throw new LivepatchError('LP_ERR_CLI_USAGE', `cannot read CA file ${opts.ca}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  try {
    return await AgentClient.connect(target, {
      token,
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.tls ? { tls: true } : {}),
      ...(ca ? { ca } : {}),
    });
  } catch (e) {
    throw explainConnectError(target, Boolean(opts.tls), e);
  }
}

function parseTimeout(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 3_600_000) {
    throw new InvalidArgumentError('expected a whole number of milliseconds between 1 and 3600000');
  }
  return n;
}

/** Add the common connection options to a command (each command lists them in its own --help). */
export function addCommonOptions(cmd: Command, opts: { json?: boolean } = { json: true }): Command {
  cmd
    .option('--token-file <file>', 'read the token from FILE (default: $LIVEPATCH_TOKEN)')
    .option('--timeout <ms>', 'connect and request timeout in milliseconds', parseTimeout)
    .option('--tls', 'connect with wss:// (the agent serves TLS)')
    .option('--ca <file>', 'PEM CA certificate(s) to trust with --tls');
  if (opts.json !== false) cmd.option('--json', 'print only JSON on stdout (errors too)');
  return cmd;
}

/** Commander's parsed option bag → CommonOptions. */
export function commonFrom(o: Record<string, unknown>): CommonOptions {
  const out: CommonOptions = {};
  if (typeof o['tokenFile'] === 'string') out.tokenFile = o['tokenFile'];
  if (o['json'] === true) out.json = true;
  if (typeof o['timeout'] === 'number') out.timeoutMs = o['timeout'];
  if (o['tls'] === true) out.tls = true;
  if (typeof o['ca'] === 'string') out.ca = o['ca'];
  return out;
}

/** Connect, run `fn` with the client, and always close the connection afterwards. */
export async function withAgent<T>(target: string, opts: CommonOptions, fn: (client: AgentClient) => Promise<T>): Promise<T> {
  const client = await connectFromOptions(target, opts);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** The action signature every command registers with: sets the process exit code when done. */
export type Finish = (code: number) => void;

/** Commander parser for a generation number or a count (a positive integer). */
export function parseGeneration(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

/** Add the options that shape a patch set read from PATCH arguments. */
export function addPatchOptions(cmd: Command): Command {
  return cmd
    .option('--root <dir>', 'project root that module ids are relative to (default: current directory)')
    .option('--id <id>', 'patch id (an id already committed is refused, so retries are safe)')
    .option('-m, --message <message>', 'message recorded in the history and audit log')
    .option('--verify <file>', 'TypeScript verify module run against the staged generation before commit');
}

/** Read PATCH arguments with the patch options parsed by commander. */
export function patchFrom(paths: string[], o: Record<string, unknown>): PatchSet {
  const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
  const root = str('root');
  const id = str('id');
  const message = str('message');
  const verifyFile = str('verify');
  return readPatchArgs(paths, {
    ...(root !== undefined ? { root } : {}),
    ...(id !== undefined ? { id } : {}),
    ...(message !== undefined ? { message } : {}),
    ...(verifyFile !== undefined ? { verifyFile } : {}),
  });
}
