/**
 * Edit one module's text in the user's $VISUAL / $EDITOR. The text goes to a private temp file named
 * like the module (so the editor picks TypeScript mode); blessed leaves the alternate screen while
 * the editor owns the terminal and restores it afterwards (screen.exec).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type blessed from 'blessed';

const MAX_EDIT_BYTES = 16 * 1024 * 1024;

/** The editor command line; may carry arguments (`code -w`), so it runs through `sh -c`. */
export function editorCommand(env: NodeJS.ProcessEnv = process.env): string {
  return env['VISUAL']?.trim() || env['EDITOR']?.trim() || 'vi';
}

/**
 * Open `text` in the editor; resolves with the saved text, or undefined when the editor failed
 * (non-zero exit or could not start) or the file became unreadable or too large.
 */
export function editText(screen: blessed.Widgets.Screen, module: string, text: string): Promise<{ text?: string; error?: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'livepatch-edit-'));
  const file = join(dir, basename(module) || 'module.ts');
  writeFileSync(file, text, { mode: 0o600 });
  const cmd = editorCommand();
  return new Promise((resolve) => {
    const done = (r: { text?: string; error?: string }) => {
      rmSync(dir, { recursive: true, force: true });
      resolve(r);
    };
    // "$1" keeps a path with spaces intact; the editor string itself is the user's own shell text.
    screen.exec('sh', ['-c', `${cmd} "$1"`, 'livepatch-edit', file], {}, (err: Error | null, ok: boolean) => {
      if (err) return done({ error: `cannot start the editor (${cmd}): ${err.message}` });
      if (!ok) return done({ error: `the editor (${cmd}) exited with an error; the draft is unchanged` });
      try {
        const out = readFileSync(file);
        if (out.length > MAX_EDIT_BYTES) return done({ error: 'the edited file is larger than 16 MiB' });
        done({ text: out.toString('utf8') });
      } catch (e) {
        done({ error: `cannot read the edited file: ${(e as NodeJS.ErrnoException).code ?? String(e)}` });
      }
    });
  });
}
