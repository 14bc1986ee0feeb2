/**
 * Which module format Node gives a file: an ES module for `.mjs`/`.mts`, or a `.js`/`.ts` file whose
 * nearest package.json says `"type": "module"`; CommonJS otherwise. Used where a module's JavaScript is
 * produced (the transpiler must emit the format the running app loads) and where it is evaluated.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Folder → whether its nearest package.json says `"type": "module"` (asked for every module the app loads). */
const typeOfDir = new Map<string, boolean>();

/** Whether Node loads `file` as an ES module. */
export function isEsModuleFile(file: string): boolean {
  if (/\.m[jt]s$/.test(file)) return true;
  if (!/\.[jt]sx?$/.test(file)) return false;
  return dirIsModule(dirname(file));
}

function dirIsModule(dir: string): boolean {
  const known = typeOfDir.get(dir);
  if (known !== undefined) return known;
  let result: boolean;
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: unknown };
    result = pkg.type === 'module';
  } catch {
    // No (readable) package.json here: look further up.
    result = dirname(dir) === dir ? false : dirIsModule(dirname(dir));
  }
  typeOfDir.set(dir, result);
  return result;
}
