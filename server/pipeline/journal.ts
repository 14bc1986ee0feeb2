/**
 * The patch journal: an append-only file (`<journalDir>/journal.jsonl`), one line per committed patch
 * set, rollback or quarantine decision, fsync'd before the operation reports success so a crash right
 * after a commit cannot lose it. Records carry full sources, their transpiled JS and the hash each
 * module had before the patch (its base), so replay needs no compiler and can detect a redeployed app
 * (drift).
 *
 * Framing. Each line is JSON of the form `{"len":N,"sha256":"<hex>","record":{...}}`: N is the byte
 * length of the record's JSON text and the hash is over exactly those bytes, so a line is accepted
 * only if it is complete and unaltered. Lines of the first format (a bare record with `"v":1`) are
 * still read.
 *
 * Torn writes. A write that fails (disk full, I/O error) is cut off again at once (ftruncate back to
 * the length before the write); and before every append the file is cut back to the end of its last
 * complete line, so the fragment of a write interrupted by a crash, or one whose cut failed, can never
 * merge with the next record. A line that ends without a newline is never accepted as a record: every
 * successful append ends with one before it is fsync'd.
 *
 * Unreadable lines are not skipped silently: `read()` returns them as problems (line, offset, size,
 * reason), which the pipeline reports on stderr, in `status` and in the audit log. Where an unreadable
 * line still ends with an intact record (a line of the first format written after a torn fragment),
 * that record is recovered and only the fragment is reported.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256 } from '../../shared/hash';

/** Record format version written now (framed lines). */
export const JOURNAL_VERSION = 2;
/** The first format: one bare JSON record per line, no framing; still read. */
export const LEGACY_VERSION = 1;

/** One module in a journaled patch. `base` is the live hash before the patch (null: the module was new). */
export interface JournalFile {
  module: string;
  source: string;
  js: string;
  hash: string;
  base: string | null;
}

interface RecordBase {
  v: number;
  /** 1-based position in the journal; rollbacks name their target by it (generation numbers differ between runs). */
  seq: number;
  time: string;
  who: string;
}

/** A committed patch set. */
export interface PatchRecord extends RecordBase {
  kind: 'patch';
  /** Generation the commit produced in the process that wrote the record. */
  generation: number;
  previousGeneration: number;
  patchId?: string;
  message?: string;
  files: JournalFile[];
  /** Signed sets: the key that signed it, as verified when it was committed (replay does not verify again). */
  signer?: { keyId: string; name?: string };
  /** Which side type-checked the set: the host, or a client (`--check-here`). */
  checkedBy?: 'host' | 'client';
  /** Set when this commit re-applies a quarantined patch: that patch's seq (it leaves quarantine). */
  reapplies?: number;
}

/** A committed rollback. */
export interface RollbackRecord extends RecordBase {
  kind: 'rollback';
  generation: number;
  previousGeneration: number;
  /** Generation number restored (in the writing process). */
  to: number;
  /** seq of the record that produced the restored generation; 0 = the deployed generation. */
  toSeq: number;
}

/** A patch set taken out of replay because its host died soon after applying it. */
export interface QuarantineRecord extends RecordBase {
  kind: 'quarantine';
  /** seq of the patch record quarantined. */
  target: number;
  reason: string;
}

/** A quarantined patch dropped by an operator: never replayed, no longer listed. */
export interface DropRecord extends RecordBase {
  kind: 'drop';
  target: number;
}

/** One record of the journal. */
export type JournalRecord = PatchRecord | RollbackRecord | QuarantineRecord | DropRecord;
type Unnumbered<T> = T extends JournalRecord ? Omit<T, 'v' | 'seq'> : never;
/** A record before `append` numbers it. */
export type NewRecord = Unnumbered<JournalRecord>;

/** A line of the journal that could not be read: it is not replayed, and it is reported. */
export interface JournalProblem {
  /** 1-based line number. */
  line: number;
  /** Byte offset of the line's start. */
  offset: number;
  /** Length of the unreadable bytes. */
  bytes: number;
  reason: string;
}

/** What `read()` found. */
export interface JournalContents {
  records: JournalRecord[];
  problems: JournalProblem[];
  /** Bytes after the last newline (a write cut short); cut off before the next append. */
  tornBytes: number;
}

const NL = 0x0a;
const FRAME_HEAD = /^\{"len":(\d{1,10}),"sha256":"([0-9a-f]{64})","record":/;
const KINDS = new Set(['patch', 'rollback', 'quarantine', 'drop']);

/** The record a line of either format holds, or why there is none. */
function decodeLine(line: Buffer): { rec: JournalRecord } | { error: string } {
  const head = FRAME_HEAD.exec(line.subarray(0, 120).toString('latin1'));
  if (head) {
    const len = Number(head[1]);
    const start = head[0].length;
    if (line.length !== start + len + 1 || line[line.length - 1] !== 0x7d /* } */)
      return { error: `framed record of ${len} bytes is incomplete or has trailing bytes` };
    const body = line.subarray(start, start + len);
    if (sha256(body) !== head[2]) return { error: 'checksum mismatch' };
    return checkRecord(body.toString('utf8'), JOURNAL_VERSION);
  }
  return checkRecord(line.toString('utf8'), LEGACY_VERSION);
}

function checkRecord(text: string, version: number): { rec: JournalRecord } | { error: string } {
  let rec: JournalRecord;
  try {
    rec = JSON.parse(text) as JournalRecord;
  } catch {
    return { error: 'not a JSON record' };
  }
  if (!rec || typeof rec !== 'object') return { error: 'not a JSON record' };
  if (rec.v !== version) return { error: `unknown record version ${JSON.stringify(rec.v)}` };
  if (!KINDS.has(rec.kind) || typeof rec.seq !== 'number') return { error: 'unknown record kind' };
  return { rec };
}

/**
 * An unreadable line may still end with an intact record: the first format appended a record right
 * after a torn fragment, on the same line. Find the last record start that decodes to the line's end.
 */
function salvage(line: Buffer): { rec: JournalRecord; at: number } | undefined {
  for (const marker of ['{"len":', '{"v":']) {
    let at = line.lastIndexOf(marker);
    // Inside a record the marker only appears escaped, so real candidates are few; bound the work anyway.
    for (let tries = 0; at > 0 && tries < 64; tries++) {
      const d = decodeLine(line.subarray(at));
      if ('rec' in d) return { rec: d.rec, at };
      at = line.lastIndexOf(marker, at - 1);
    }
  }
  return undefined;
}

/** Parse a journal's bytes. */
export function parseJournal(buf: Buffer): JournalContents {
  const records: JournalRecord[] = [];
  const problems: JournalProblem[] = [];
  let offset = 0;
  let lineNo = 0;
  while (offset < buf.length) {
    const nl = buf.indexOf(NL, offset);
    if (nl < 0) break; // the torn tail
    lineNo++;
    const line = buf.subarray(offset, nl);
    if (line.toString('latin1').trim() !== '') {
      const d = decodeLine(line);
      if ('rec' in d) records.push(d.rec);
      else {
        const s = salvage(line);
        if (s) {
          records.push(s.rec);
          problems.push({
            line: lineNo,
            offset,
            bytes: s.at,
            reason: `torn fragment before record #${s.rec.seq} (the record was recovered)`,
          });
        } else {
          problems.push({ line: lineNo, offset, bytes: line.length, reason: d.error });
        }
      }
    }
    offset = nl + 1;
  }
  const tornBytes = buf.length - offset;
  if (tornBytes > 0) {
    problems.push({
      line: lineNo + 1,
      offset,
      bytes: tornBytes,
      reason: 'incomplete last line: a write that never completed (no commit reported it as done); cut off before the next append',
    });
  }
  return { records, problems, tornBytes };
}

/** The journal file of one process. Appends must not overlap (the pipeline's lock ensures it). */
export class Journal {
  readonly file: string;
  private seq = 0;
  /** Length of the file before an append that failed and could not be cut off again. */
  private cutTo: number | undefined;

  constructor(readonly dir: string) {
    this.file = join(dir, 'journal.jsonl');
  }

  /** Read every intact record (creating the directory if needed); unreadable lines come back as problems. */
  read(): JournalContents {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (!existsSync(this.file)) return { records: [], problems: [], tornBytes: 0 };
    const out = parseJournal(readFileSync(this.file));
    // Numbering continues after every record, even one reported as unreadable but recovered.
    this.seq = out.records.reduce((m, r) => Math.max(m, r.seq), this.seq);
    return out;
  }

  /** Append one record and fsync it; resolves with the record as written. On failure nothing of it remains. */
  async append(rec: NewRecord): Promise<JournalRecord> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const created = !existsSync(this.file);
    const full = { v: JOURNAL_VERSION, seq: this.seq + 1, ...rec } as JournalRecord;
    const body = Buffer.from(JSON.stringify(full), 'utf8');
    const line = Buffer.concat([
      Buffer.from(`{"len":${body.length},"sha256":"${sha256(body)}","record":`, 'latin1'),
      body,
      Buffer.from('}\n', 'latin1'),
    ]);
    const fh = await open(this.file, 'a+', 0o600);
    try {
      const start = await cutTornTail(fh, this.cutTo);
      this.cutTo = undefined;
      try {
        await fh.appendFile(line);
        await fh.sync();
      } catch (err) {
        // Disk full or an I/O error: take the partial line back out so it can never merge with the next.
        try {
          await fh.truncate(start);
          await fh.sync();
        } catch {
          this.cutTo = start;
        }
        throw err;
      }
    } finally {
      await fh.close();
    }
    if (created) syncDir(this.dir);
    this.seq = full.seq;
    return full;
  }
}

/**
 * Cut the file back to the end of its last complete line (or to `cutTo`, the length before a failed
 * append); returns the resulting length, where the next record starts.
 */
async function cutTornTail(fh: FileHandle, cutTo: number | undefined): Promise<number> {
  const { size } = await fh.stat();
  let end = size;
  if (cutTo !== undefined && cutTo < end) end = cutTo;
  // Walk back from `end` to just after the last newline.
  const chunk = Buffer.alloc(64 * 1024);
  let pos = end;
  let lineEnd = 0;
  while (pos > 0) {
    const len = Math.min(chunk.length, pos);
    const { bytesRead } = await fh.read(chunk, 0, len, pos - len);
    const i = chunk.subarray(0, bytesRead).lastIndexOf(NL);
    if (i >= 0) {
      lineEnd = pos - len + i + 1;
      break;
    }
    pos -= len;
  }
  if (lineEnd < size) {
    process.stderr.write(`livepatch: journal: cutting off ${size - lineEnd} byte(s) of an incomplete write before appending\n`);
    await fh.truncate(lineEnd);
  }
  return lineEnd;
}

/** fsync a directory so a newly created file's entry survives a crash. */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on directories; the file itself is synced.
  }
}
