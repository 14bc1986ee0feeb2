/**
 * Options every networked command shares (token file, JSON output, timeout, TLS) and the one way the
 * CLI, the REPL and the TUI open an authenticated connection from them. The token comes from
 * `--token-file` or LIVEPATCH_TOKEN only: a secret on argv would leak through `ps` and shell history.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { AgentClient, resolveToken } from '../connection';
import { LivepatchError } from '../../shared';

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
      throw new LivepatchError('LP_ERR_CONN_REFUSED', `cannot read CA file ${opts.ca}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  return AgentClient.connect(target, {
    token,
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.tls ? { tls: true } : {}),
    ...(ca ? { ca } : {}),
  });
}

function parseTimeout(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 3_600_000) {
    throw new LivepatchError('LP_ERR_OP_BAD_ARGS', `--timeout must be a whole number of milliseconds between 1 and 3600000, got "${value}"`);
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
