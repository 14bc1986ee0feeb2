/**
 * Which module format Node gives a file: an ES module for `.mjs`/`.mts`, or a `.js`/`.ts` file whose
 * nearest package.json says `"type": "module"`; CommonJS otherwise. Used where a module's JavaScript is
 * produced (the transpiler must emit the format the running app loads) and where it is evaluated.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Whether Node loads `file` as an ES module. */
export function isEsModuleFile(file: string): boolean {
  if (/\.m[jt]s$/.test(file)) return true;
  if (!/\.[jt]sx?$/.test(file)) return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: unknown };
      return pkg.type === 'module';
    } catch {
      // No (readable) package.json here: look further up.
    }
    if (dirname(dir) === dir) return false;
  }
}
