/**
 * The agent's signature policy for patch sets, in one place for every way a set arrives: an
 * operator's apply or stage (ops/patch.ts) and a fleet's rollout or join (server/fleet/member.ts).
 */
import { LivepatchError } from '../../shared/errors';
import type { PatchSet } from '../../shared/patch';
import { verifyPatchSet, type Signer } from '../../shared/signing';
import { readTrustedKeys } from './options';

/**
 * With trusted keys (LIVEPATCH_TRUSTED_KEYS), only a set signed by one of them may be staged or
 * applied: an unsigned set is LP_ERR_PATCH_UNSIGNED, a set whose key is not trusted or whose
 * signature does not match its contents LP_ERR_PATCH_BAD_SIGNATURE. A host that runs the JavaScript a
 * client sends (checks "client": no sources) also needs that JavaScript signed (the `/2` encoding,
 * `livepatch sign --compile`): a valid signature over the sources only is LP_ERR_PATCH_UNSIGNED there;
 * a host that checks itself ignores `compiled` and takes either. Checked before any compiler work,
 * so a refused set changes nothing. The keys file is read again each time, so removing a key takes
 * effect at the next op; if it can no longer be read, every set is refused (never accepted unsigned).
 * Returns the signer, or undefined when the agent has no trusted keys. `runsClientJs`: this host runs
 * the client's JavaScript (its pipeline's checks are "client"). `note` (an audit record) gets the
 * signer's key id and, on a refusal, why.
 */
export function checkSignature(
  file: string | undefined,
  patch: PatchSet,
  runsClientJs: boolean,
  note: { signer?: Signer; detail?: string },
): Signer | undefined {
  if (!file) return undefined;
  let keys;
  try {
    keys = readTrustedKeys(file);
  } catch (e) {
    process.stderr.write(`livepatch: ${(e as Error).message}\n`);
    note.detail = 'the trusted keys file cannot be read';
    throw new LivepatchError(
      'LP_ERR_PATCH_BAD_SIGNATURE',
      "The agent cannot read its trusted keys; no patch set is accepted until it can (see the agent's stderr)",
    );
  }
  const verdict = verifyPatchSet(patch, keys);
  if (verdict.ok) {
    note.signer = verdict.signer;
    // A host that cannot check runs the client's JavaScript: the signature must cover exactly that.
    if (patch.compiled && !verdict.coversJs && runsClientJs) {
      note.detail = 'the signature does not cover the compiled JavaScript';
      throw new LivepatchError(
        'LP_ERR_PATCH_UNSIGNED',
        `This agent has no TypeScript sources and runs the compiled JavaScript sent with the set, but the signature (key ${verdict.signer.keyId}) ` +
          'covers the sources only, not the compiled JavaScript: sign the set with its JavaScript (livepatch sign --compile) and apply the signed set with --check-here',
        { keyId: verdict.signer.keyId },
      );
    }
    return verdict.signer;
  }
  if (verdict.reason === 'unsigned') {
    note.detail = 'unsigned patch set';
    throw new LivepatchError(
      'LP_ERR_PATCH_UNSIGNED',
      'This agent accepts only signed patch sets (livepatch sign); this one has no signature',
    );
  }
  note.signer = { keyId: verdict.keyId };
  if (verdict.reason === 'unknown-key') {
    note.detail = 'signed by a key that is not trusted';
    throw new LivepatchError(
      'LP_ERR_PATCH_BAD_SIGNATURE',
      `The patch set is signed by key ${verdict.keyId}, which this agent does not trust`,
      { keyId: verdict.keyId },
    );
  }
  const withJs = patch.signature?.format !== undefined;
  note.detail = withJs
    ? 'the signature does not match the patch set or its compiled JavaScript'
    : 'the signature does not match the patch set';
  throw new LivepatchError(
    'LP_ERR_PATCH_BAD_SIGNATURE',
    `The signature (key ${verdict.keyId}) does not match the patch set${withJs ? ' and its compiled JavaScript' : ''}: it was changed after signing, or signed by another key`,
    { keyId: verdict.keyId },
  );
}
