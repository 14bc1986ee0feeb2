/**
 * `quarantine`: drop or re-apply a patch that crash-loop protection took out of replay. The list of
 * quarantined patches is part of `status` and `history` (read role); changing it needs the patch role.
 * A re-apply is an ordinary commit (checked, staged, committed, journaled) and is recorded as one.
 */
import { LivepatchError } from '../../../shared/errors';
import type { Handler } from './types';

export const quarantine: Handler<'quarantine'> = async (call) => {
  const { pipeline, patchingReason } = call.ctx;
  if (!pipeline) throw new LivepatchError('LP_ERR_PATCH_NO_SOURCES', `patching is disabled here: ${patchingReason ?? 'no pipeline'}`);
  if (!pipeline.quarantine) throw new LivepatchError('LP_ERR_QUARANTINE_UNKNOWN', 'This agent has no journal: nothing is quarantined');
  const { drop, reapply } = call.args;
  if ((drop === undefined) === (reapply === undefined))
    throw new LivepatchError('LP_ERR_OP_BAD_ARGS', 'Give exactly one of drop and reapply');
  call.audit.detail = drop !== undefined ? `drop ${drop}` : `reapply ${reapply}`;
  const session = call.session;
  const result = await pipeline.quarantine(call.args, {
    who: session.who,
    onProgress: (p) => session.progress(call.id, p.step, p.message, p.fraction),
  });
  if (result.patch.patchId) call.audit.patchId = result.patch.patchId;
  if (result.commit) {
    call.audit.generation = result.commit.generation;
    call.ctx.commits.set(result.commit.generation, {
      who: session.who,
      ...(result.patch.message ? { message: result.patch.message } : {}),
    });
  }
  call.audit.detail =
    `${result.action} quarantined patch ${result.patch.patchId ?? `#${result.patch.seq}`} (journal record #${result.patch.seq}): ${result.patch.modules.join(', ')}`.slice(
      0,
      2000,
    );
  return result;
};
