/**
 * Crash-loop protection: the probation marker (`<journalDir>/probation.json`).
 *
 * When a patch set is committed, or the journal has been replayed, the newest live patch is "on
 * probation" for a window (default 60 s). The marker names it. It is removed when the window passes
 * or the host exits cleanly (exit code 0). When the host exits with another code inside the window
 * (an uncaught exception, an unhandled rejection, `process.exit(1)`), the exit hook writes the crash
 * into the marker. A host that ends without running its exit hooks (killed by a signal, by the OOM
 * killer) leaves the marker as it was.
 *
 * The next start reads the marker before replay: a recorded crash quarantines the patch at once; a
 * death without a trace counts as one strike, and a second one in a row for the same patch
 * quarantines it too (so one ordinary restart right after a patch does not lose it, but a loop is
 * broken on its second turn). Nothing here may throw into the host.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Default probation window (ms). */
export const DEFAULT_CRASH_WINDOW_MS = 60_000;

/** What the marker holds. */
export interface Probation {
  v: 1;
  /** Journal record (seq) of the patch on probation. */
  seq: number;
  patchId?: string;
  pid: number;
  /** When probation began (ISO). */
  since: string;
  windowMs: number;
  /** Earlier starts that ended inside the window without a trace while this patch was on probation. */
  strikes: number;
  /** Written by the exit hook: the host exited with a non-zero code during probation. */
  crash?: { exitCode: number; error?: string; at: string };
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return text.replace(/\s+/g, ' ').slice(0, 300);
}

/** One journal directory's probation marker. */
export class CrashGuard {
  readonly file: string;
  private current: Probation | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastError: string | undefined;
  private hooked = false;

  constructor(
    dir: string,
    readonly windowMs: number,
  ) {
    this.file = join(dir, 'probation.json');
  }

  /** The patch on probation in this process now, if any. */
  get probation(): Probation | undefined {
    return this.current;
  }

  /** The marker a previous host left, or undefined (none, or unreadable: then it is ignored). */
  previous(): Probation | undefined {
    if (this.windowMs <= 0) return undefined;
    try {
      const p = JSON.parse(readFileSync(this.file, 'utf8')) as Probation;
      if (p?.v !== 1 || typeof p.seq !== 'number' || typeof p.strikes !== 'number') return undefined;
      if (p.pid === process.pid) return undefined;
      return p;
    } catch {
      return undefined;
    }
  }

  /** Put journal record `seq` on probation for the window. Returns false if the marker could not be written. */
  arm(seq: number, patchId: string | undefined, strikes = 0): boolean {
    if (this.windowMs <= 0) {
      // Protection is off: a marker an earlier run left must not act later.
      this.disarm();
      return true;
    }
    const p: Probation = {
      v: 1,
      seq,
      ...(patchId !== undefined ? { patchId } : {}),
      pid: process.pid,
      since: new Date().toISOString(),
      windowMs: this.windowMs,
      strikes,
    };
    try {
      writeDurably(this.file, p);
    } catch (err) {
      process.stderr.write(`livepatch: crash-loop protection: cannot write ${this.file}: ${oneLine(err)}\n`);
      return false;
    }
    this.current = p;
    this.hook();
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.disarm(), this.windowMs);
    this.timer.unref();
    return true;
  }

  /** End probation: the marker is removed. */
  disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.current = undefined;
    this.unhook();
    try {
      unlinkSync(this.file);
    } catch {
      // Already gone.
    }
  }

  /** Stop watching without touching the marker (the pipeline is closing). */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.current = undefined;
    this.unhook();
  }

  private readonly onUncaught = (err: unknown): void => {
    this.lastError = oneLine(err);
  };

  private readonly onExit = (code: number): void => {
    const p = this.current;
    if (!p) return;
    try {
      if (code === 0) {
        unlinkSync(this.file);
        return;
      }
      writeDurably(this.file, {
        ...p,
        crash: { exitCode: code, ...(this.lastError ? { error: this.lastError } : {}), at: new Date().toISOString() },
      });
    } catch {
      // The host is exiting; a marker left as it was still counts as one strike.
    }
  };

  private hook(): void {
    if (this.hooked) return;
    this.hooked = true;
    process.on('exit', this.onExit);
    // The monitor only observes: the host's own handling of the exception is unchanged.
    process.on('uncaughtExceptionMonitor', this.onUncaught);
  }

  private unhook(): void {
    if (!this.hooked) return;
    this.hooked = false;
    process.off('exit', this.onExit);
    process.off('uncaughtExceptionMonitor', this.onUncaught);
  }
}

/** Write JSON to `file` through a temporary file, fsync'd, then renamed over it. */
function writeDurably(file: string, value: unknown): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(value) + '\n', { mode: 0o600 });
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
