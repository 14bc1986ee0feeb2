/**
 * The audit log: append-only JSONL, one record per audited event, hash-chained.
 *
 * Each record carries `prev`, the sha256 of the previous line exactly as written (64 zeros for the
 * first), so editing, inserting or deleting a line breaks the chain at the next line. The agent also
 * keeps the hash of the last line it wrote; `audit-verify` compares the file's tail against it, which
 * catches truncation and edits of the final line while the agent runs. A writer who rewrites the whole
 * chain is not detected by this alone (see the README's threat model).
 *
 * Writes are synchronous appends: audited ops are rare and ordering is what the chain needs. A failing
 * write is logged once and never stops the agent.
 */
import { appendFileSync, closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AuditVerifyResult } from '../../shared/ops';
import { sha256 } from '../../shared/hash';

export const GENESIS = '0'.repeat(64);

export interface AuditEntry {
  /** Token name, or '-' before authentication. */
  who: string;
  remote: string;
  op: string;
  /** 'ok' or the error code. */
  outcome: string;
  patchId?: string;
  /** module id → sha256 of the source sent. */
  hashes?: Record<string, string>;
  stageId?: string;
  generation?: number;
  /** Signed patch sets (agents with trusted keys): the key id the set names, and the key's name when it is trusted. */
  signer?: { keyId: string; name?: string };
  /** check, stage, apply: which side type-checked the patch set (the host, or a client with --check-here). */
  checkedBy?: 'host' | 'client';
  /** REPL session an eval ran in (`default@<connection>` for the connection's default session). */
  session?: string;
  detail?: string;
  /** For a watch verdict: the figure that crossed its limit (`errorRate`, `p99`). */
  figure?: string;
  /** How many events this record stands for, when more than one (aggregated refusals). */
  count?: number;
}

export interface AuditRecord extends AuditEntry {
  time: string;
  prev: string;
}

/** The last non-empty line of a file (reads only its tail). */
function lastLine(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const size = fstatSync(fd).size;
    let len = Math.min(size, 64 * 1024);
    for (;;) {
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      const lines = buf
        .toString('utf8')
        .split('\n')
        .filter((l) => l.length > 0);
      // A complete last line needs a newline before it, unless we read from the start of the file.
      if (lines.length >= 2 || len === size) return lines[lines.length - 1];
      len = Math.min(size, len * 4);
    }
  } finally {
    closeSync(fd);
  }
}

/** Appends chained records to one file. */
export class AuditLog {
  readonly path: string;
  #head: string;
  #warned = false;

  constructor(path: string) {
    this.path = path;
    const last = lastLine(path);
    this.#head = last === undefined ? GENESIS : sha256(last);
  }

  /** sha256 of the last line written (GENESIS for an empty log). */
  get head(): string {
    return this.#head;
  }

  append(entry: AuditEntry): void {
    const rec: AuditRecord = { time: new Date().toISOString(), ...entry, prev: this.#head };
    const line = JSON.stringify(rec);
    try {
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      appendFileSync(this.path, line + '\n', { mode: 0o600 });
      this.#head = sha256(line);
    } catch (e) {
      if (!this.#warned) {
        this.#warned = true;
        process.stderr.write(`livepatch: cannot write audit log ${this.path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}\n`);
      }
    }
  }
}

/**
 * Verify a log's chain. With `expectedHead` (the writer's in-memory head), the last line must hash to
 * it. A missing file is an empty, valid log.
 */
export function verifyAuditFile(path: string, expectedHead?: string): AuditVerifyResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      return expectedHead && expectedHead !== GENESIS
        ? { ok: false, records: 0, brokenAt: 1, reason: 'the audit log is missing' }
        : { ok: true, records: 0 };
    }
    return { ok: false, records: 0, reason: `cannot read the audit log: ${(e as NodeJS.ErrnoException).code ?? String(e)}` };
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  let prev = GENESIS;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    let rec: { prev?: unknown };
    try {
      rec = JSON.parse(line) as { prev?: unknown };
    } catch {
      return { ok: false, records: i, brokenAt: i + 1, reason: `line ${i + 1} is not valid JSON` };
    }
    if (typeof rec !== 'object' || rec === null || rec.prev !== prev) {
      return {
        ok: false,
        records: i,
        brokenAt: i + 1,
        reason: `line ${i + 1} does not chain to line ${i} (edited, inserted or deleted record)`,
      };
    }
    prev = sha256(line);
  }
  if (expectedHead !== undefined && prev !== expectedHead) {
    return {
      ok: false,
      records: lines.length,
      brokenAt: lines.length,
      reason: 'the last record is not the last one the agent wrote (truncated or edited tail)',
    };
  }
  return { ok: true, records: lines.length };
}

/** sha256 of each patched source, for audit records. */
export function hashFiles(files: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(files)) out[k] = sha256(v);
  return out;
}

/** One refusal an unauthenticated peer can repeat at will. */
export interface Refusal {
  remote: string;
  op: string;
  outcome: string;
  detail: string;
  /** The token id the peer claimed, when it sent a well-formed auth message. */
  tokenId?: string;
}

interface Bucket {
  op: string;
  outcome: string;
  remote: string;
  /** Events since the last record. */
  count: number;
  detail: string;
  tokenIds: Set<string>;
  /** Overflow buckets only: the distinct addresses folded in. */
  addresses?: Set<string>;
  timer: NodeJS.Timeout;
}

/**
 * Audit records for refusals before authentication (failed proofs, junk, silence, locked-out retries,
 * refused Origins, dropped upgrade requests), aggregated so that no peer can fill the disk: per
 * (op, outcome, address), the first event is recorded at once and the rest as one record with `count`
 * at the end of each interval in which more arrived. Beyond `maxBuckets` live (op, outcome, address)
 * keys — a peer rotating source addresses — events fold into one record per (op, outcome) with
 * remote `*`, written at the end of the interval with the count and the number of addresses.
 */
export class RefusalAudit {
  #log: AuditLog;
  #intervalMs: number;
  #maxBuckets: number;
  #buckets = new Map<string, Bucket>();

  constructor(log: AuditLog, intervalMs: number, maxBuckets = 32) {
    this.#log = log;
    this.#intervalMs = intervalMs;
    this.#maxBuckets = maxBuckets;
  }

  note(r: Refusal): void {
    const key = `${r.op}|${r.outcome}|${r.remote}`;
    let b = this.#buckets.get(key);
    if (!b) {
      const own = [...this.#buckets.values()].filter((x) => !x.addresses).length;
      if (own < this.#maxBuckets) {
        this.#log.append({ who: '-', remote: r.remote, op: r.op, outcome: r.outcome, detail: r.detail });
        this.#open(key, r, false);
        return;
      }
      const okey = `${r.op}|${r.outcome}|*`;
      b = this.#buckets.get(okey) ?? this.#open(okey, { ...r, remote: '*' }, true);
    }
    b.count++;
    b.detail = r.detail;
    if (r.tokenId && b.tokenIds.size < 8) b.tokenIds.add(r.tokenId);
    if (b.addresses && b.addresses.size < 100_000) b.addresses.add(r.remote);
  }

  #open(key: string, r: Refusal, overflow: boolean): Bucket {
    const b: Bucket = {
      op: r.op,
      outcome: r.outcome,
      remote: r.remote,
      count: 0,
      detail: r.detail,
      tokenIds: new Set(),
      timer: undefined as unknown as NodeJS.Timeout,
    };
    if (overflow) b.addresses = new Set();
    const tick = () => {
      if (b.count === 0) {
        this.#buckets.delete(key);
        return;
      }
      this.#write(b);
      b.timer = setTimeout(tick, this.#intervalMs);
      b.timer.unref();
    };
    b.timer = setTimeout(tick, this.#intervalMs);
    b.timer.unref();
    this.#buckets.set(key, b);
    return b;
  }

  #write(b: Bucket): void {
    const secs = Math.round(this.#intervalMs / 100) / 10;
    const ids = b.tokenIds.size ? `; token ids ${[...b.tokenIds].join(', ')}` : '';
    const from = b.addresses ? ` from ${b.addresses.size} addresses beyond the first ${this.#maxBuckets}` : '';
    this.#log.append({
      who: '-',
      remote: b.remote,
      op: b.op,
      outcome: b.outcome,
      count: b.count,
      detail: `${b.count} in the last ${secs} s${from}; last: ${b.detail}${ids}`,
    });
    b.count = 0;
    b.tokenIds.clear();
    b.addresses?.clear();
  }

  /** Write every pending count now (agent stop). */
  flush(): void {
    for (const [key, b] of this.#buckets) {
      clearTimeout(b.timer);
      if (b.count > 0) this.#write(b);
      this.#buckets.delete(key);
    }
  }
}
