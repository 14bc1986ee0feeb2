/**
 * Offline signing (no agent involved):
 *
 * - `livepatch keygen --out DIR [--name NAME]`: a new Ed25519 key pair. The private key goes to
 *   `DIR/livepatch-signing.key` (PKCS#8 PEM, mode 0600), the public key to `DIR/livepatch-signing.pub`
 *   as one trusted-keys line (`NAME ed25519:BASE64`), which is also printed on stdout so
 *   `livepatch keygen --out k >> trusted-keys` works. Existing files are never overwritten.
 * - `livepatch sign PATCH... --key FILE [--id ID] -m MSG --out FILE`: read PATCH like `apply` does,
 *   optionally record the hashes of the sources it replaces (`--base-dir DIR`: the deployed tree), sign
 *   the set's canonical encoding (shared/signing.ts) and write the signed set as JSON. With
 *   `--compile`, the JavaScript each module (and the verify module) runs as is emitted here, with the
 *   tsconfig of `--checkout DIR` (default: current directory) and the emit the client check uses
 *   (`--check-here`), and signed with the set (`livepatch-patch-set/2`): a host without TypeScript
 *   sources then runs exactly those bytes.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import {
  KEY_NAME_RE,
  LivepatchError,
  formatPublicKey,
  generateSigningKey,
  loadPrivateKey,
  signPatchSet,
  type PatchSet,
} from '../../../shared';
import { readPatchArgs } from '../../patch-files';
import { emitPatchJs } from '../../client-check';
import { formatDiagnostics } from '../../format';
import { type Finish } from '../options';
import { note, printJson, runCommand } from '../output';
import { sha256 } from '../../../shared/hash';

export const PRIVATE_KEY_FILE = 'livepatch-signing.key';
export const PUBLIC_KEY_FILE = 'livepatch-signing.pub';
/** A private key file is a few hundred bytes; anything much larger is not one. */
const MAX_KEY_BYTES = 64 * 1024;

function usage(message: string): LivepatchError {
  return new LivepatchError('LP_ERR_CLI_USAGE', message);
}

/** Write `text` to a file that must not exist yet (`wx`), with `mode`. */
function writeNew(path: string, text: string, mode: number): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', mode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw usage(code === 'EEXIST' ? `${path} already exists: it is not overwritten` : `cannot create ${path}: ${code ?? String(e)}`);
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** The set with `base` hashes of the sources it replaces under `dir` (modules absent there are new: no base). */
function withBases(set: PatchSet, dir: string): PatchSet {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw usage(`--base-dir ${dir}: no such directory`);
  }
  if (!st.isDirectory()) throw usage(`--base-dir ${dir} is not a directory`);
  const base: Record<string, string> = { ...set.base };
  for (const id of Object.keys(set.files)) {
    const file = join(dir, ...id.split('/'));
    if (!existsSync(file)) continue;
    if (statSync(file).size > 16 * 1024 * 1024) throw usage(`${file} is larger than 16 MiB`);
    base[id] = sha256(readFileSync(file, 'utf8'));
  }
  return Object.keys(base).length > 0 ? { ...set, base } : set;
}

/**
 * The set with `compiled: {js, verifyJs?, typescript}`: the JavaScript of each module as Node loads it,
 * emitted with the tsconfig of `checkout`. A syntax error is LP_ERR_PATCH_SYNTAX (nothing written).
 */
function withCompiled(set: PatchSet, checkout: string): PatchSet {
  const root = resolve(checkout);
  if (!existsSync(join(root, 'tsconfig.json'))) {
    throw usage(`no tsconfig.json in ${root}: --compile emits with the project's tsconfig; pass --checkout DIR`);
  }
  // Loaded here, not at start-up: it brings in the TypeScript compiler.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const tc = require('../../../shared/typecheck') as typeof import('../../../shared/typecheck');
  let checker;
  try {
    checker = new tc.ProgramChecker(root);
  } catch (e) {
    throw usage(`cannot read the tsconfig in ${root}: ${(e as Error).message}`);
  }
  const out = emitPatchJs(checker, set);
  const errors = out.diagnostics.filter((d) => d.category === 'error');
  if (errors.length > 0) {
    process.stderr.write(formatDiagnostics(errors));
    throw new LivepatchError('LP_ERR_PATCH_SYNTAX', `the patch does not compile: ${errors.length} error(s); nothing was signed`);
  }
  return {
    ...set,
    compiled: { js: out.js, ...(out.verifyJs !== undefined ? { verifyJs: out.verifyJs } : {}), typescript: tc.TYPESCRIPT_VERSION },
  };
}

/** Register `keygen` and `sign` on `program`. */
export function registerSign(program: Command, finish: Finish): void {
  program
    .command('keygen')
    .description('create an Ed25519 key pair for signing patch sets (offline)')
    .requiredOption('--out <dir>', `directory for ${PRIVATE_KEY_FILE} (private, 0600) and ${PUBLIC_KEY_FILE}`)
    .option('--name <name>', 'name of the key in the trusted-keys line (letters, digits, _ . @ -)', 'ci')
    .option('--json', 'print only JSON on stdout (errors too)')
    .action(async (o: { out: string; name: string; json?: boolean }) => {
      finish(
        await runCommand(Boolean(o.json), async () => {
          if (!KEY_NAME_RE.test(o.name)) throw usage(`invalid key name "${o.name}": letters, digits and _ . @ - (1 to 100)`);
          try {
            mkdirSync(o.out, { recursive: true, mode: 0o700 });
          } catch (e) {
            throw usage(`cannot create ${o.out}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
          }
          const priv = join(o.out, PRIVATE_KEY_FILE);
          const pub = join(o.out, PUBLIC_KEY_FILE);
          for (const f of [priv, pub]) if (existsSync(f)) throw usage(`${f} already exists: it is not overwritten`);
          const k = generateSigningKey();
          const line = `${o.name} ${formatPublicKey(k.publicRaw)}`;
          writeNew(priv, k.privatePem, 0o600);
          writeNew(pub, line + '\n', 0o644);
          if (o.json)
            printJson({ keyId: k.keyId, name: o.name, publicKey: formatPublicKey(k.publicRaw), privateKeyFile: priv, publicKeyFile: pub });
          else process.stdout.write(line + '\n');
          note(
            `key ${k.keyId}: private key in ${priv} (keep it in the CI secret store only), public key line in ${pub}: add it to the agent's LIVEPATCH_TRUSTED_KEYS file`,
          );
          return 0;
        }),
      );
    });

  program
    .command('sign')
    .description('sign PATCH with an Ed25519 private key and write the signed patch set (offline)')
    .argument('<patch...>', '.ts files, directories, or a .json patch set')
    .requiredOption('--key <file>', `private key (${PRIVATE_KEY_FILE} from livepatch keygen)`)
    .requiredOption('-m, --message <message>', 'message recorded in the history and audit log')
    .requiredOption('--out <file>', 'where to write the signed patch set (.json)')
    .option('--id <id>', 'patch id (an id already committed is refused, so retries are safe)')
    .option('--root <dir>', 'project root that module ids are relative to (default: current directory)')
    .option('--verify <file>', 'TypeScript verify module run against the staged generation before commit')
    .option(
      '--base-dir <dir>',
      'root of the deployed sources: record the hash of each module PATCH replaces there, so a live module changed since is a conflict',
    )
    .option(
      '--compile',
      'also sign the JavaScript each module runs as, emitted here with the project tsconfig: needed by hosts without TypeScript sources',
    )
    .option('--checkout <dir>', 'with --compile: the project root whose tsconfig.json is used (default: current directory)')
    .option('--json', 'print only JSON on stdout (errors too)')
    .action(async (paths: string[], o: Record<string, unknown>) => {
      const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
      finish(
        await runCommand(o['json'] === true, async () => {
          const out = str('out')!;
          if (!out.endsWith('.json')) throw usage(`--out ${out}: a patch set file ends in .json`);
          const keyFile = str('key')!;
          let pem: string;
          try {
            if (statSync(keyFile).size > MAX_KEY_BYTES) throw usage(`${keyFile} is too large to be a private key`);
            pem = readFileSync(keyFile, 'utf8');
          } catch (e) {
            if (e instanceof LivepatchError) throw e;
            throw usage(`cannot read ${keyFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
          }
          let key;
          try {
            key = loadPrivateKey(pem);
          } catch (e) {
            throw usage(`${keyFile}: ${(e as Error).message}`);
          }
          const root = str('root');
          const id = str('id');
          const verifyFile = str('verify');
          let set = readPatchArgs(paths, {
            message: str('message')!,
            dropSignature: true,
            ...(root !== undefined ? { root } : {}),
            ...(id !== undefined ? { id } : {}),
            ...(verifyFile !== undefined ? { verifyFile } : {}),
          });
          const baseDir = str('baseDir');
          if (baseDir !== undefined) set = withBases(set, baseDir);
          if (o['compile'] === true) set = withCompiled(set, str('checkout') ?? process.cwd());
          else if (str('checkout') !== undefined) throw usage('--checkout is for --compile');
          const signed = signPatchSet(set, key);
          try {
            writeFileSync(out, JSON.stringify(signed, null, 2) + '\n', { mode: 0o644 });
          } catch (e) {
            throw usage(`cannot write ${out}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
          }
          const modules = Object.keys(signed.files).sort();
          const keyId = signed.signature!.keyId;
          if (o['json'] === true)
            printJson({
              out,
              keyId,
              modules,
              ...(signed.id !== undefined ? { id: signed.id } : {}),
              bases: Object.keys(signed.base ?? {}).length,
              compiled: signed.compiled !== undefined,
            });
          else
            process.stdout.write(
              `${out}: ${modules.length} module(s) signed with key ${keyId}${signed.compiled ? ' (with their compiled JavaScript)' : ''}\n`,
            );
          return 0;
        }),
      );
    });
}
