/**
 * The pipeline's entry: `createPipeline(opts)` builds the check → stage → commit → journal pipeline
 * for one engine. Construction is synchronous; journal replay starts inside (holding the app's
 * requests until it is done) and `ready` resolves when it is over. The checker worker starts lazily
 * on the first check.
 */
import { PatchPipeline } from './pipeline';
import type { Pipeline, PipelineOptions } from './types';

export type { Pipeline, PipelineOptions, OpContext, Progress } from './types';

/** A pipeline with `ready`: resolves (never rejects) once journal replay has finished. */
export type ReadyPipeline = Pipeline & { readonly ready: Promise<void> };

/** Create the pipeline for `opts.engine`; see server/pipeline/types.ts for the contract. */
export function createPipeline(opts: PipelineOptions): ReadyPipeline {
  return new PatchPipeline(opts);
}
