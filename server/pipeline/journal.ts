/**
 * The patch journal: an append-only JSON-lines file (`<journalDir>/journal.jsonl`), one record per
 * committed patch set or rollback, fsync'd before the operation reports success so a crash right
 * after a commit cannot lose it. Read once at start for replay; a torn last line (crash mid-write) is
 * ignored. Records carry full sources, their transpiled JS and the hash each module had before the
 * patch (its base), so replay needs no compiler and can detect a redeployed app (drift).
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';

/** Record format version; records of another version are skipped on read. */
export const JOURNAL_VERSION = 1;

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
  /** Generation the commit produced in the process that wrote the record. */
  generation: number;
  previousGeneration: number;
}

/** A committed patch set. */
export interface PatchRecord extends RecordBase {
  kind: 'patch';
  patchId?: string;
  message?: string;
  files: JournalFile[];
}

/** A committed rollback. */
export interface RollbackRecord extends RecordBase {
  kind: 'rollback';
  /** Generation number restored (in the writing process). */
  to: number;
  /** seq of the record that produced the restored generation; 0 = the deployed generation. */
  toSeq: number;
}

/** One line of the journal. */
export type JournalRecord = PatchRecord | RollbackRecord;
/** A record before `append` numbers it. */
export type NewRecord = Omit<PatchRecord, 'v' | 'seq'> | Omit<RollbackRecord, 'v' | 'seq'>;

/** The journal file of one process. Appends must not overlap (the pipeline's lock ensures it). */
export class Journal {
  readonly file: string;
  private seq = 0;
  /** Set when the file ends in a torn line: the next record starts on a fresh line. */
  private torn = false;

  constructor(readonly dir: string) {
    this.file = join(dir, 'journal.jsonl');
  }

  /** Read every intact record (creating the directory if needed). */
  read(): JournalRecord[] {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (!existsSync(this.file)) return [];
    const text = readFileSync(this.file, 'utf8');
    this.torn = text.length > 0 && !text.endsWith('\n');
    const lines = text.split('\n');
    const out: JournalRecord[] = [];
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      try {
        const rec = JSON.parse(line) as JournalRecord;
        if (rec.v !== JOURNAL_VERSION || (rec.kind !== 'patch' && rec.kind !== 'rollback') || typeof rec.seq !== 'number') throw new Error('unknown record');
        out.push(rec);
      } catch {
        // A torn last line is the expected trace of a crash mid-append; anything else is worth a warning.
        if (i < lines.length - 1 && lines.slice(i + 1).some((l) => l.trim())) {
          process.stderr.write(`livepatch: journal ${this.file}: skipping unreadable line ${i + 1}\n`);
        }
      }
    });
    this.seq = out.reduce((m, r) => Math.max(m, r.seq), 0);
    return out;
  }

  /** Append one record and fsync it; resolves with the record as written. */
  async append(rec: NewRecord): Promise<JournalRecord> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const created = !existsSync(this.file);
    const full = { v: JOURNAL_VERSION, seq: this.seq + 1, ...rec } as JournalRecord;
    const fh = await open(this.file, 'a', 0o600);
    try {
      await fh.appendFile((this.torn ? '\n' : '') + JSON.stringify(full) + '\n', 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (created) syncDir(this.dir);
    this.seq = full.seq;
    this.torn = false;
    return full;
  }
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
