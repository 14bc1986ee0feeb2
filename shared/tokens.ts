/**
 * The tokens file: who may connect, with which role. Written by `livepatch token create`, read by the
 * agent. It holds hashed entries only (see auth.ts): never a secret.
 *
 * Format (JSON): `{ "version": 1, "tokens": [ { "id", "name", "role", "storedKey", "created" } ] }`.
 * Created with mode 0600.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { z } from 'zod';
import { ROLES, generateToken, type Role } from './auth';

export const tokenEntrySchema = z
  .object({
    id: z.string().regex(/^[0-9a-f]{8}$/),
    name: z.string().min(1).max(100),
    role: z.enum(ROLES),
    storedKey: z.string().regex(/^[0-9a-f]{64}$/),
    created: z.string(),
  })
  .strict();
export type TokenEntry = z.infer<typeof tokenEntrySchema>;

const tokensFileSchema = z.object({ version: z.literal(1), tokens: z.array(tokenEntrySchema).max(10000) }).strict();
export type TokensFile = z.infer<typeof tokensFileSchema>;

export const TOKEN_NAME_RE = /^[A-Za-z0-9_.@-]{1,100}$/;

/** Read and validate a tokens file. Throws an Error with a readable message. */
export function readTokensFile(path: string): TokensFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read tokens file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`tokens file ${path} is not valid JSON`);
  }
  const parsed = tokensFileSchema.safeParse(json);
  if (!parsed.success) throw new Error(`tokens file ${path} is malformed: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

/**
 * Add a token named `name` with `role` to the file (created if missing), atomically (write + fsync +
 * rename). Returns the new token; it is shown once and never stored.
 */
export function addToken(path: string, name: string, role: Role): { token: string; entry: TokenEntry } {
  if (!TOKEN_NAME_RE.test(name)) throw new Error(`invalid token name "${name}": use letters, digits, _ . @ -`);
  let file: TokensFile = { version: 1, tokens: [] };
  try {
    readFileSync(path);
    file = readTokensFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && !String((e as Error).message).includes('ENOENT')) throw e;
  }
  if (file.tokens.some((t) => t.name === name)) throw new Error(`a token named "${name}" already exists in ${path}`);
  const { token, id, storedKey } = generateToken();
  const entry: TokenEntry = { id, name, role, storedKey, created: new Date().toISOString() };
  file.tokens.push(entry);
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(file, null, 2) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return { token, entry };
}
