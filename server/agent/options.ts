/**
 * Agent options: defaults, the environment mapping used by the preload, and validation.
 *
 * Validation enforces the loopback rule: the agent carries tokens handshakes and patch sources, so it
 * refuses to listen on a non-loopback TCP address in clear text unless TLS is configured or the
 * operator explicitly opts in (`insecure`). Every limit is an option so tests can make them small.
 */
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Engine } from '../engine/types';
import type { Pipeline } from '../pipeline/types';
import { MAX_TRUSTED_KEYS_BYTES, parseTrustedKeys, type TrustedKey } from '../../shared/signing';
import { parseFleetUrl, type FleetAddress } from '../../shared/fleet';
import { formatTarget, isLoopbackHost, parseTarget, type Target } from '../../shared/target';
import type { CheckerEngineSetting } from '../../shared/ops';

export interface LockoutOptions {
  /**
   * Failed credential proofs for one token id from one address within `windowMs` that lock that token
   * id out at that address. Junk, silence and protocol errors do not count.
   */
  maxFailures: number;
  windowMs: number;
  /** How long a locked-out address is refused. */
  lockMs: number;
}

export interface AgentOptions {
  /** `host:port` or `unix:/path/to.sock` (default `127.0.0.1:12345`). */
  listen?: string;
  /** Tokens file (shared/tokens.ts). Required: there is no unauthenticated mode. */
  tokensFile?: string;
  /** Project root (default cwd). */
  root?: string;
  /** PEM certificate and key paths: serve wss. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /**
   * Trusted-keys file (shared/signing.ts). When set, apply and stage accept only patch sets signed by
   * one of its keys. It is read at start (an unreadable or malformed file stops the agent from
   * starting: no silent fallback to unsigned patches) and again before every apply and stage.
   */
  trustedKeysFile?: string;
  /** Journal directory, handed to the pipeline. */
  journalDir?: string;
  /** Re-apply the journal at start (default true; LIVEPATCH_REPLAY=off turns it off). */
  replay?: boolean;
  /** Crash-loop protection window in ms (default 60000; 0 = off). */
  crashWindowMs?: number;
  /** Audit log path (default `<journalDir or root/.livepatch>/audit.jsonl`). */
  auditFile?: string;
  /** Allow a non-loopback bind without TLS. */
  insecure?: boolean;
  /** Origins allowed at the upgrade; any other Origin header gets HTTP 403. CLI clients send none. */
  allowedOrigins?: string[];
  /** Max frame size in bytes after authentication (default 8 MiB); larger frames close the socket with 1009. */
  maxPayload?: number;
  /** Max frame size in bytes before authentication (default 4 KiB; an auth frame is under 300 bytes). */
  maxPreAuthPayload?: number;
  /** Max fragments of one message (default 16384, the WebSocket library's own limit); more close with 1008. */
  maxFragments?: number;
  /** Authenticated connections. Unauthenticated ones have their own budget and never take these slots. */
  maxConnections?: number;
  /**
   * Connections that opened but have not authenticated yet (default 16). When the budget is full, the
   * oldest of them is closed (4002) to make room, so silent sockets cannot keep an operator out.
   */
  maxUnauthenticated?: number;
  /**
   * TCP connections whose HTTP upgrade request is not complete yet (default 64); when full, the oldest
   * is dropped to make room.
   */
  maxPendingUpgrades?: number;
  /** Time allowed from TCP connect to a complete upgrade request (ms, default 3000). */
  upgradeTimeoutMs?: number;
  /** Refused handshakes are audited once per address per interval, with a count (ms, default 60000). */
  auditAggregateMs?: number;
  maxInflight?: number;
  /** Replies queued for a client that does not read them; beyond this the connection is closed (1008). */
  maxBufferedBytes?: number;
  /** Time allowed for the client's `auth` message after `hello` (ms, default 3000). */
  handshakeTimeoutMs?: number;
  /** Ping interval (ms); a peer that misses one pong is dropped. */
  heartbeatMs?: number;
  /** Close a connection with no client message for this long (ms); 0 disables. Subscribers are exempt. */
  idleTimeoutMs?: number;
  /** Delay before closing a failed handshake (ms), to slow guessing. */
  authFailDelayMs?: number;
  lockout?: Partial<LockoutOptions>;
  /** Heap limit of the type-check service process, MB (default 1024; LIVEPATCH_CHECKER_MAX_MB). */
  checkerMaxMb?: number;
  /** The type-check service stops after this long without a check, ms (default 30000; LIVEPATCH_CHECKER_IDLE_MS). */
  checkerIdleMs?: number;
  /** Directory of the checker's persisted incremental state, or false for none (default: the journal dir, else `<root>/.livepatch`; LIVEPATCH_CHECKER_CACHE, `off` = none). */
  checkerCacheDir?: string | false;
  /**
   * Start the type-check service in the background once the agent is up (after journal replay), at the
   * service's lower priority, so the first apply finds a warm program (default off; LIVEPATCH_CHECKER_WARMUP=1).
   * The service still stops after `checkerIdleMs` without a check.
   */
  checkerWarmup?: boolean;
  /**
   * Which compiler type-checks patches (LIVEPATCH_CHECKER_ENGINE): 'auto' (default) uses TypeScript's
   * native compiler when it is installed and accepts the unpatched program, else the JavaScript one;
   * 'native' and 'typescript' force one (docs/patching.md).
   */
  checkerEngine?: CheckerEngineSetting;
  /** Join this fleet: `etcd://HOST:PORT[,HOST:PORT]/NAME` (docs/fleet.md; TLS and etcd auth from LIVEPATCH_FLEET_*). */
  fleet?: string;
  /** Fleet member lease TTL in seconds (default 10). */
  fleetLeaseTtlSec?: number;
  /** Longest time requests are held while joining the fleet (ms, default 30000). */
  fleetJoinMs?: number;
  /**
   * Where patches are type-checked (LIVEPATCH_CHECKS): 'auto' (default) = here when the sources are
   * here, else on the client with a build manifest; 'client' = only patches checked on a client
   * (`--check-here`) are accepted, even with sources here, so the host never starts a checker.
   */
  checks?: 'auto' | 'client';
  /** Use this engine / pipeline instead of the installed one / a new one (embedding, tests). */
  engine?: Engine;
  pipeline?: Pipeline;
}

export interface ResolvedOptions {
  target: Target;
  tokensFile: string;
  root: string;
  tls?: { cert: Buffer; key: Buffer };
  trustedKeysFile?: string;
  journalDir?: string;
  replay: boolean;
  crashWindowMs?: number;
  auditFile: string;
  allowedOrigins: string[];
  maxPayload: number;
  maxPreAuthPayload: number;
  maxFragments: number;
  maxConnections: number;
  maxUnauthenticated: number;
  maxPendingUpgrades: number;
  upgradeTimeoutMs: number;
  auditAggregateMs: number;
  maxInflight: number;
  maxBufferedBytes: number;
  handshakeTimeoutMs: number;
  heartbeatMs: number;
  idleTimeoutMs: number;
  authFailDelayMs: number;
  lockout: LockoutOptions;
  checkerMaxMb: number;
  checkerIdleMs: number;
  checkerCacheDir?: string | false;
  checkerWarmup: boolean;
  checkerEngine: CheckerEngineSetting;
  fleet?: { address: FleetAddress; leaseTtlSec: number; joinMs: number };
  checks?: 'auto' | 'client';
}

export const DEFAULTS = {
  listen: '127.0.0.1:12345',
  maxPayload: 8 * 1024 * 1024,
  maxPreAuthPayload: 4096,
  maxFragments: 16 * 1024,
  maxConnections: 32,
  maxUnauthenticated: 16,
  maxPendingUpgrades: 64,
  upgradeTimeoutMs: 3000,
  auditAggregateMs: 60_000,
  maxInflight: 8,
  maxBufferedBytes: 64 * 1024 * 1024,
  handshakeTimeoutMs: 3000,
  heartbeatMs: 30_000,
  idleTimeoutMs: 30 * 60_000,
  authFailDelayMs: 200,
  lockout: { maxFailures: 5, windowMs: 60_000, lockMs: 5 * 60_000 },
  checkerMaxMb: 1024,
  checkerIdleMs: 30_000,
} as const;

/** Read and parse a trusted-keys file. Throws an Error saying what is wrong with it. */
export function readTrustedKeys(path: string): Map<string, TrustedKey> {
  let text: string;
  try {
    if (statSync(path).size > MAX_TRUSTED_KEYS_BYTES) throw new Error(`larger than ${MAX_TRUSTED_KEYS_BYTES} bytes`);
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(
      `cannot read trusted keys ${path} (LIVEPATCH_TRUSTED_KEYS): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      { cause: e },
    );
  }
  try {
    const keys = parseTrustedKeys(text);
    if (keys.size === 0) throw new Error('it holds no key');
    return keys;
  } catch (e) {
    throw new Error(`trusted keys ${path} (LIVEPATCH_TRUSTED_KEYS): ${(e as Error).message}`, { cause: e });
  }
}

function positiveInt(name: string, v: number | undefined, dflt: number, allowZero = false): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < (allowZero ? 0 : 1))
    throw new Error(`invalid ${name}: ${v} (expected a ${allowZero ? 'non-negative' : 'positive'} integer)`);
  return v;
}

/** Apply defaults and check the options. Throws an Error whose message says what to fix. */
export function resolveOptions(o: AgentOptions): ResolvedOptions {
  const listen = o.listen ?? DEFAULTS.listen;
  const target = parseTarget(listen);
  if (!target) throw new Error(`invalid listen address "${listen}": use host:port or unix:/path/to.sock`);
  if (!o.tokensFile) throw new Error('no tokens file: set LIVEPATCH_TOKENS (there is no unauthenticated mode)');
  if (Boolean(o.tlsCertFile) !== Boolean(o.tlsKeyFile))
    throw new Error('TLS needs both a certificate and a key (LIVEPATCH_TLS_CERT and LIVEPATCH_TLS_KEY)');
  let tls: ResolvedOptions['tls'];
  if (o.tlsCertFile && o.tlsKeyFile) {
    try {
      tls = { cert: readFileSync(o.tlsCertFile), key: readFileSync(o.tlsKeyFile) };
    } catch (e) {
      throw new Error(`cannot read TLS certificate or key: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
    }
  }
  if (target.kind === 'tcp' && !isLoopbackHost(target.host) && !tls && !o.insecure) {
    throw new Error(
      `refusing to listen on ${formatTarget(target)} without TLS: it is not a loopback address, so handshakes, patch sources and ` +
        'eval results would cross the network in clear text. Set LIVEPATCH_TLS_CERT and LIVEPATCH_TLS_KEY, ' +
        'or LIVEPATCH_INSECURE=1 if the network is trusted.',
    );
  }
  const root = resolve(o.root ?? process.cwd());
  const trustedKeysFile = o.trustedKeysFile ? resolve(root, o.trustedKeysFile) : undefined;
  if (trustedKeysFile) readTrustedKeys(trustedKeysFile);
  const journalDir = o.journalDir ? resolve(root, o.journalDir) : undefined;
  const auditFile = resolve(root, o.auditFile ?? join(journalDir ?? join(root, '.livepatch'), 'audit.jsonl'));
  const lk = { ...DEFAULTS.lockout, ...o.lockout };
  let fleet: ResolvedOptions['fleet'];
  if (o.fleet) {
    try {
      fleet = {
        address: parseFleetUrl(o.fleet),
        leaseTtlSec: positiveInt('fleetLeaseTtlSec', o.fleetLeaseTtlSec, 10),
        joinMs: positiveInt('fleetJoinMs', o.fleetJoinMs, 30_000),
      };
    } catch (e) {
      throw new Error((e as Error).message, { cause: e });
    }
  }
  return {
    ...(fleet ? { fleet } : {}),
    target,
    tokensFile: resolve(root, o.tokensFile),
    root,
    ...(tls ? { tls } : {}),
    ...(trustedKeysFile ? { trustedKeysFile } : {}),
    ...(journalDir ? { journalDir } : {}),
    replay: o.replay !== false,
    ...(o.crashWindowMs !== undefined ? { crashWindowMs: positiveInt('crashWindowMs', o.crashWindowMs, 0, true) } : {}),
    auditFile,
    allowedOrigins: o.allowedOrigins ?? [],
    maxPayload: positiveInt('maxPayload', o.maxPayload, DEFAULTS.maxPayload),
    maxPreAuthPayload: positiveInt('maxPreAuthPayload', o.maxPreAuthPayload, DEFAULTS.maxPreAuthPayload),
    maxFragments: positiveInt('maxFragments', o.maxFragments, DEFAULTS.maxFragments),
    maxConnections: positiveInt('maxConnections', o.maxConnections, DEFAULTS.maxConnections),
    maxUnauthenticated: positiveInt('maxUnauthenticated', o.maxUnauthenticated, DEFAULTS.maxUnauthenticated),
    maxPendingUpgrades: positiveInt('maxPendingUpgrades', o.maxPendingUpgrades, DEFAULTS.maxPendingUpgrades),
    upgradeTimeoutMs: positiveInt('upgradeTimeoutMs', o.upgradeTimeoutMs, DEFAULTS.upgradeTimeoutMs),
    auditAggregateMs: positiveInt('auditAggregateMs', o.auditAggregateMs, DEFAULTS.auditAggregateMs),
    maxInflight: positiveInt('maxInflight', o.maxInflight, DEFAULTS.maxInflight),
    maxBufferedBytes: positiveInt('maxBufferedBytes', o.maxBufferedBytes, DEFAULTS.maxBufferedBytes),
    handshakeTimeoutMs: positiveInt('handshakeTimeoutMs', o.handshakeTimeoutMs, DEFAULTS.handshakeTimeoutMs),
    heartbeatMs: positiveInt('heartbeatMs', o.heartbeatMs, DEFAULTS.heartbeatMs),
    idleTimeoutMs: positiveInt('idleTimeoutMs', o.idleTimeoutMs, DEFAULTS.idleTimeoutMs, true),
    authFailDelayMs: positiveInt('authFailDelayMs', o.authFailDelayMs, DEFAULTS.authFailDelayMs, true),
    lockout: {
      maxFailures: positiveInt('lockout.maxFailures', lk.maxFailures, DEFAULTS.lockout.maxFailures),
      windowMs: positiveInt('lockout.windowMs', lk.windowMs, DEFAULTS.lockout.windowMs),
      lockMs: positiveInt('lockout.lockMs', lk.lockMs, DEFAULTS.lockout.lockMs),
    },
    checkerMaxMb: positiveInt('checkerMaxMb', o.checkerMaxMb, DEFAULTS.checkerMaxMb),
    checkerIdleMs: positiveInt('checkerIdleMs', o.checkerIdleMs, DEFAULTS.checkerIdleMs),
    checkerWarmup: o.checkerWarmup === true,
    checkerEngine: engineOption(o.checkerEngine),
    ...(o.checkerCacheDir !== undefined ? { checkerCacheDir: o.checkerCacheDir === false ? false : resolve(root, o.checkerCacheDir) } : {}),
    ...(o.checks !== undefined ? { checks: checksOption(o.checks) } : {}),
  };
}

function checksOption(v: unknown): 'auto' | 'client' {
  if (v === 'auto' || v === 'client') return v;
  throw new Error(`invalid checks ${JSON.stringify(v)}: expected auto or client`);
}

function engineOption(v: unknown, name = 'checkerEngine'): CheckerEngineSetting {
  if (v === undefined) return 'auto';
  if (v === 'auto' || v === 'native' || v === 'typescript') return v;
  throw new Error(`invalid ${name}=${JSON.stringify(v)}: expected auto, native or typescript`);
}

function envInt(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new Error(`invalid ${name}="${v}": expected an integer`);
  return n;
}

/**
 * Options from the environment (the preload's configuration). Limits have env names too
 * (LIVEPATCH_MAX_PAYLOAD, _MAX_PREAUTH_PAYLOAD, _MAX_FRAGMENTS, _MAX_CONNECTIONS, _MAX_UNAUTHENTICATED,
 * _MAX_PENDING_UPGRADES, _UPGRADE_MS, _MAX_INFLIGHT, _MAX_BUFFERED, _HANDSHAKE_MS, _HEARTBEAT_MS, _IDLE_MS,
 * _AUTH_FAIL_DELAY_MS, _AUDIT_AGGREGATE_MS, _LOCKOUT=`failures/windowMs/lockMs`, _ALLOWED_ORIGINS comma-separated); the journal's
 * LIVEPATCH_REPLAY=off and LIVEPATCH_CRASH_WINDOW_MS; LIVEPATCH_TRUSTED_KEYS (signed patch sets only);
 * the type checker's LIVEPATCH_CHECKER_MAX_MB, LIVEPATCH_CHECKER_IDLE_MS, LIVEPATCH_CHECKER_CACHE
 * (a directory, or `off`), LIVEPATCH_CHECKER_WARMUP (`1`: start it in the background) and
 * LIVEPATCH_CHECKER_ENGINE (`auto`, `native`, `typescript`); the fleet's LIVEPATCH_FLEET, _FLEET_LEASE_TTL (s) and _FLEET_JOIN_MS;
 * LIVEPATCH_CHECKS (`auto` or `client`: where patches are type-checked).
 */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): AgentOptions {
  const o: AgentOptions = {};
  const str = (k: string) => (env[k] && env[k]!.trim() ? env[k]!.trim() : undefined);
  const set = <K extends keyof AgentOptions>(key: K, v: AgentOptions[K] | undefined) => {
    if (v !== undefined) o[key] = v;
  };
  set('listen', str('LIVEPATCH_LISTEN'));
  set('tokensFile', str('LIVEPATCH_TOKENS'));
  set('root', str('LIVEPATCH_ROOT'));
  set('tlsCertFile', str('LIVEPATCH_TLS_CERT'));
  set('tlsKeyFile', str('LIVEPATCH_TLS_KEY'));
  set('trustedKeysFile', str('LIVEPATCH_TRUSTED_KEYS'));
  set('journalDir', str('LIVEPATCH_JOURNAL'));
  set('auditFile', str('LIVEPATCH_AUDIT'));
  const replay = str('LIVEPATCH_REPLAY');
  if (replay !== undefined) {
    if (/^(off|0|false|no)$/i.test(replay)) o.replay = false;
    else if (/^(on|1|true|yes)$/i.test(replay)) o.replay = true;
    else throw new Error(`invalid LIVEPATCH_REPLAY="${replay}": expected off or on`);
  }
  set('crashWindowMs', envInt(env, 'LIVEPATCH_CRASH_WINDOW_MS'));
  set('fleet', str('LIVEPATCH_FLEET'));
  set('fleetLeaseTtlSec', envInt(env, 'LIVEPATCH_FLEET_LEASE_TTL'));
  set('fleetJoinMs', envInt(env, 'LIVEPATCH_FLEET_JOIN_MS'));
  if (env['LIVEPATCH_INSECURE'] === '1' || env['LIVEPATCH_INSECURE'] === 'true') o.insecure = true;
  const origins = str('LIVEPATCH_ALLOWED_ORIGINS');
  if (origins)
    o.allowedOrigins = origins
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  set('maxPayload', envInt(env, 'LIVEPATCH_MAX_PAYLOAD'));
  set('maxPreAuthPayload', envInt(env, 'LIVEPATCH_MAX_PREAUTH_PAYLOAD'));
  set('maxFragments', envInt(env, 'LIVEPATCH_MAX_FRAGMENTS'));
  set('maxConnections', envInt(env, 'LIVEPATCH_MAX_CONNECTIONS'));
  set('maxUnauthenticated', envInt(env, 'LIVEPATCH_MAX_UNAUTHENTICATED'));
  set('maxPendingUpgrades', envInt(env, 'LIVEPATCH_MAX_PENDING_UPGRADES'));
  set('upgradeTimeoutMs', envInt(env, 'LIVEPATCH_UPGRADE_MS'));
  set('auditAggregateMs', envInt(env, 'LIVEPATCH_AUDIT_AGGREGATE_MS'));
  set('maxInflight', envInt(env, 'LIVEPATCH_MAX_INFLIGHT'));
  set('maxBufferedBytes', envInt(env, 'LIVEPATCH_MAX_BUFFERED'));
  set('handshakeTimeoutMs', envInt(env, 'LIVEPATCH_HANDSHAKE_MS'));
  set('heartbeatMs', envInt(env, 'LIVEPATCH_HEARTBEAT_MS'));
  set('idleTimeoutMs', envInt(env, 'LIVEPATCH_IDLE_MS'));
  set('authFailDelayMs', envInt(env, 'LIVEPATCH_AUTH_FAIL_DELAY_MS'));
  set('checkerMaxMb', envInt(env, 'LIVEPATCH_CHECKER_MAX_MB'));
  set('checkerIdleMs', envInt(env, 'LIVEPATCH_CHECKER_IDLE_MS'));
  const cache = str('LIVEPATCH_CHECKER_CACHE');
  if (cache !== undefined) o.checkerCacheDir = /^(off|0|false|no|none)$/i.test(cache) ? false : cache;
  const warmup = str('LIVEPATCH_CHECKER_WARMUP');
  if (warmup !== undefined) {
    if (!/^(1|on|true|yes|0|off|false|no)$/i.test(warmup))
      throw new Error(`invalid LIVEPATCH_CHECKER_WARMUP="${warmup}": expected 1/on or 0/off`);
    o.checkerWarmup = /^(1|on|true|yes)$/i.test(warmup);
  }
  const engine = str('LIVEPATCH_CHECKER_ENGINE');
  if (engine !== undefined) o.checkerEngine = engineOption(engine, 'LIVEPATCH_CHECKER_ENGINE');
  const checks = str('LIVEPATCH_CHECKS');
  if (checks !== undefined) {
    if (checks !== 'auto' && checks !== 'client') throw new Error(`invalid LIVEPATCH_CHECKS="${checks}": expected auto or client`);
    o.checks = checks;
  }
  const lockout = str('LIVEPATCH_LOCKOUT');
  if (lockout) {
    const [maxFailures, windowMs, lockMs] = lockout.split('/').map((s) => Number(s));
    o.lockout = {
      ...(Number.isInteger(maxFailures) ? { maxFailures } : {}),
      ...(Number.isInteger(windowMs) ? { windowMs } : {}),
      ...(Number.isInteger(lockMs) ? { lockMs } : {}),
    };
  }
  return o;
}
