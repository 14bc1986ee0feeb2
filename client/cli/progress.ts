/**
 * Progress for slow ops on stderr. Only when stderr is a terminal, and only once an op has run for
 * more than a second: quick commands print nothing extra, and pipes and CI logs never get spinner
 * noise. Each update rewrites one status line, which is cleared when the op ends.
 */
import type { ProgressMessage } from '../../shared';

/** Delay before the first progress line appears. */
export const PROGRESS_DELAY_MS = 1000;

export interface ProgressReporter {
  /** Pass as RequestOptions.onProgress. */
  onProgress: (p: ProgressMessage) => void;
  /** Clear the status line; call when the op settles. */
  done(): void;
}

/**
 * A reporter for one op on one host. `label` prefixes the line (the host, for fleet operations).
 * Inert when `enabled` is false (default: stderr is a TTY).
 */
export function progressReporter(label: string, enabled = Boolean(process.stderr.isTTY)): ProgressReporter {
  if (!enabled) return { onProgress: () => {}, done: () => {} };
  let latest = 'working';
  let shown = false;
  const show = () => {
    const text = `livepatch: ${label}: ${latest}`.slice(0, Math.max(20, (process.stderr.columns || 80) - 1));
    process.stderr.write(`\r\x1b[2K${text}`);
    shown = true;
  };
  const timer = setTimeout(show, PROGRESS_DELAY_MS);
  return {
    onProgress(p) {
      const pct = typeof p.fraction === 'number' ? ` ${Math.round(p.fraction * 100)}%` : '';
      latest = `${p.step}: ${p.message}${pct}`;
      if (shown) show();
    },
    done() {
      clearTimeout(timer);
      if (shown) process.stderr.write('\r\x1b[2K');
      shown = false;
    },
  };
}
