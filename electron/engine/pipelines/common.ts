// What every pipeline shares: the schedule a pack describes, the pack's defaults merged under the
// user's parameters (explicit values always win), the noise estimator a loop calls, and the
// progress plumbing from loop steps to `onProgress`.
import { RetraceError, throwIfAborted } from '../errors.js';
import type { ProgressEvent, RunOptions } from '../progress.js';
import type { NoiseEstimator } from '../schedulers/loop.js';
import { buildSchedule, type NoiseSchedule } from '../schedulers/schedule.js';
import type { Conditioning, DiffusionModel } from './model.js';

/** Defaults used when neither the user nor the pack says otherwise (the BDIA editing preset). */
export const ENGINE_DEFAULTS = {
  steps: 20,
  inversionSteps: 50,
  guidance: 3,
  gamma: 0.94,
  strength: 0.8,
} as const;

export function scheduleOf(model: DiffusionModel): NoiseSchedule {
  return buildSchedule(model.manifest.schedule);
}

/** Grid offset of the pack (Stable Diffusion's `steps_offset`). */
export function stepsOffset(model: DiffusionModel): number {
  return model.source.stepsOffset ?? 0;
}

export function requireTask(model: DiffusionModel, task: 'text-to-image' | 'restoration'): void {
  if (model.manifest.task !== task) {
    throw new RetraceError(
      'BAD_INPUT',
      `pack ${model.source.id} is a ${model.manifest.task} pack; this job needs a ${task} pack`,
    );
  }
}

/** The latent shape [C, h, w] of an image of `width` × `height` pixels. */
export function latentShape(model: DiffusionModel, width: number, height: number): number[] {
  const latent = model.manifest.latent;
  if (model.manifest.space !== 'latent' || !latent) return [3, height, width];
  const d = latent.downsample;
  if (width % d !== 0 || height % d !== 0) {
    throw new RetraceError(
      'BAD_INPUT',
      `size ${width}×${height} is not a multiple of the pack's downsampling factor ${d}`,
    );
  }
  return [latent.channels, height / d, width / d];
}

/** The working size of a pack: its default resolution, or an explicit one checked against it. */
export function outputSize(
  model: DiffusionModel,
  width?: number,
  height?: number,
): { width: number; height: number } {
  const [dw, dh] = model.manifest.resolution.default;
  const m = model.manifest.resolution.multipleOf;
  const size = { width: width ?? dw, height: height ?? dh };
  for (const [name, v] of Object.entries(size)) {
    if (v % m !== 0) {
      throw new RetraceError('BAD_INPUT', `${name} ${v} must be a multiple of ${m} for this pack`);
    }
  }
  return size;
}

/**
 * The loops' view of a text-to-image network: guided ε for B rows, both branches in one call.
 * The conditioning is fixed for the whole loop (one prompt pair for every row).
 */
export function guidedEstimator(
  model: DiffusionModel,
  rowShape: readonly number[],
  conditioning: Conditioning | undefined,
  guidance: number,
  signal: AbortSignal | undefined,
): NoiseEstimator {
  return async (z, timesteps) => {
    throwIfAborted(signal);
    return model.guidedNoise(z, rowShape, timesteps, conditioning, guidance);
  };
}

/** Maps a loop's `onStep(done, total)` to the user's progress events for one phase. */
export function stepReporter(
  run: RunOptions,
  phase: string,
  detail?: string,
): (done: number, total: number) => void {
  return (done, total) => {
    const event: ProgressEvent = { phase, step: done, total };
    if (detail !== undefined) event.detail = detail;
    run.onProgress?.(event);
  };
}

export function report(run: RunOptions, event: ProgressEvent): void {
  run.onProgress?.(event);
}

/** Seconds since `start` (a performance.now() reading). */
export function secondsSince(start: number): number {
  return (performance.now() - start) / 1000;
}
