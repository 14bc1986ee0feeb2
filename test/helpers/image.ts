/**
 * A "production image" of a test project: its compiled `dist/`, the build manifest written by
 * `livepatch manifest`, package.json, and production node_modules (livepatch's runtime files and
 * dependencies, no `typescript`). No sources, no tsconfig: the agent there cannot type-check.
 */
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from './project';

/** Copy the image of the project at `root` (built, with its manifest) to a new temporary folder. */
export function buildImage(root: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'lp-image-'));
  cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
  cpSync(join(root, 'livepatch.manifest.json'), join(dir, 'livepatch.manifest.json'));
  cpSync(join(root, 'package.json'), join(dir, 'package.json'));
  const lp = join(dir, 'node_modules', 'livepatch');
  mkdirSync(join(lp, 'dist'), { recursive: true });
  cpSync(join(REPO, 'package.json'), join(lp, 'package.json'));
  for (const d of ['server', 'shared']) cpSync(join(REPO, 'dist', d), join(lp, 'dist', d), { recursive: true });
  for (const dep of ['ws', 'zod', 'acorn'])
    cpSync(join(REPO, 'node_modules', dep), join(dir, 'node_modules', dep), { recursive: true, dereference: true });
  return dir;
}
