// Editing a real photo with BDIA (ALGORITHMS.md §1): `invertImage` walks the photo's latent up to
// noise with the source prompt and keeps the pair (z_M, z_{M−1}); `replayInversion` walks a pair
// back down with any prompt — the same prompt gives back the source latent bit for bit
// (docs/exactness.md), another prompt is the edit; `roundtrip` does both and measures the error,
// for BDIA or, as the inexact baseline, naive DDIM inversion.
import { invertParamsSchema, roundtripParamsSchema } from '../../contract/jobs.js';
import type { InvertParams, RoundtripParams } from '../../contract/jobs.js';
import { RetraceError } from '../errors.js';
import type { RunOptions } from '../progress.js';
import { maxAbsDiff } from '../runtime/tensors.js';
import { invertBdia, replayBdia, type BdiaPair, type MaskBlend } from '../schedulers/bdia.js';
import { sampleDdim } from '../schedulers/ddim.js';
import { invertDdimNaive } from '../schedulers/ddim-inversion.js';
import { editLevels } from '../schedulers/schedule.js';
import {
  ENGINE_DEFAULTS,
  guidedEstimator,
  requireTask,
  scheduleOf,
  secondsSince,
  stepReporter,
  stepsOffset,
} from './common.js';
import type { DiffusionModel } from './model.js';

/** An image as the networks see it: [3, H, W] in [−1, 1]. */
export interface ModelImage {
  chw: Float32Array;
  width: number;
  height: number;
}

export interface ResolvedInvert {
  prompt: string;
  negativePrompt: string;
  steps: number;
  strength: number;
  gamma: number;
  guidance: number;
  allowLowGamma: boolean;
}

/** What an inversion holds: everything a replay needs, nothing it must recompute. */
export interface InversionState extends BdiaPair {
  /** [1, C, h, w]. */
  shape: number[];
  levels: number[];
  gamma: number;
  guidance: number;
  prompt: string;
  negativePrompt: string;
  steps: number;
  strength: number;
  width: number;
  height: number;
}

export interface InvertOutput {
  inversion: InversionState;
  /**
   * The source latent x (scaled) as the inversion used it, rounded to BDIA's lattice (≤ 4.6e-13
   * away from the VAE's output): a replay with the source prompt returns exactly this.
   */
  latent: Float64Array;
  nfe: number;
  seconds: number;
}

export interface ReplayOutput {
  latent: Float64Array;
  image: ModelImage;
  nfe: number;
  seconds: number;
}

export interface RoundtripReport {
  method: 'bdia' | 'ddim-inversion';
  /** max |z_0 − x| over the latent. */
  latentMaxAbsError: number;
  /** max |decode(z_0) − decode(x)| on the 0–255 scale: what the inversion itself changes. */
  pixelMaxAbsError: number;
  /** max |decode(x) − source| on the 0–255 scale: what the VAE alone loses (not the inversion). */
  vaeMaxAbsError: number;
  /** Network evaluations of the inversion and the replay together (guidance batched). */
  nfe: number;
  /**
   * Sampling steps in each direction, one network call each. Naive DDIM inversion steps through
   * every interval of the M kept levels (M steps); BDIA's start pair (x, x) and stored pair
   * (z_M, z_{M−1}) each hold two levels, so it takes M − 1 steps each way (ALGORITHMS.md §1).
   */
  steps: number;
  seconds: number;
  levels: number[];
  gamma?: number;
  /** The replayed image. */
  image: ModelImage;
}

export function resolveInvert(model: DiffusionModel, input: InvertParams): ResolvedInvert {
  const p = invertParamsSchema.parse(input);
  const d = model.manifest.defaults ?? {};
  return {
    prompt: p.prompt,
    negativePrompt: p.negativePrompt,
    steps: p.steps ?? ENGINE_DEFAULTS.inversionSteps,
    strength: p.strength ?? d.strength ?? ENGINE_DEFAULTS.strength,
    gamma: p.gamma ?? d.gamma ?? ENGINE_DEFAULTS.gamma,
    guidance: p.guidance ?? ENGINE_DEFAULTS.guidance,
    allowLowGamma: p.allowLowGamma,
  };
}

function requireInvertible(model: DiffusionModel): void {
  requireTask(model, 'text-to-image');
  const { space, components } = model.manifest;
  if (space === 'latent' && (!components.vaeEncoder || !components.vaeDecoder)) {
    throw new RetraceError(
      'BAD_INPUT',
      `pack ${model.source.id} lacks a VAE encoder or decoder: a latent pack needs both to invert photos`,
    );
  }
}

/** Text conditioning, or none for an unconditional pack (no text encoder). */
function conditioningOf(model: DiffusionModel, prompt: string, negativePrompt: string) {
  return model.manifest.components.textEncoder
    ? model.conditioning(prompt, negativePrompt)
    : Promise.resolve(undefined);
}

/** The state the sampler works on: the scaled VAE latent, or the pixels of a pixel-space pack. */
export async function encode(model: DiffusionModel, image: ModelImage) {
  if (model.manifest.space === 'pixel') {
    return { latent: Float64Array.from(image.chw), shape: [1, 3, image.height, image.width] };
  }
  const { latent, shape } = await model.encodeImage(image.chw, image.height, image.width);
  return { latent, shape: [1, ...shape] };
}

/** Back to an image: the VAE decoder, or the state itself for a pixel-space pack. */
export async function decodeState(model: DiffusionModel, latent: Float64Array, shape: number[]) {
  if (model.manifest.space === 'pixel') {
    return {
      chw: Float32Array.from(latent),
      width: shape[3] as number,
      height: shape[2] as number,
    };
  }
  const { chw, width, height } = await model.decodeLatent(latent, shape.slice(1));
  return { chw, width, height };
}

export async function invertImage(
  model: DiffusionModel,
  image: ModelImage,
  input: InvertParams,
  run: RunOptions = {},
  hooks: {
    onState?: (index: number, z: Float64Array) => void;
    /** The image's state, already encoded (an encode is not always repeatable). */
    encoded?: { latent: Float64Array; shape: number[] };
  } = {},
): Promise<InvertOutput> {
  const started = performance.now();
  requireInvertible(model);
  const p = resolveInvert(model, input);
  const { levels } = editLevels(
    model.manifest.schedule.trainSteps,
    p.steps,
    p.strength,
    stepsOffset(model),
  );
  run.onProgress?.({ phase: 'encoding image', step: 0, total: 1 });
  const { latent, shape } = hooks.encoded ?? (await encode(model, image));
  const conditioning = await conditioningOf(model, p.prompt, p.negativePrompt);
  const pair = await invertBdia(
    scheduleOf(model),
    latent,
    levels,
    guidedEstimator(model, shape.slice(1), conditioning, p.guidance, run.signal),
    {
      gamma: p.gamma,
      allowLowGamma: p.allowLowGamma,
      ...(run.signal ? { signal: run.signal } : {}),
      onStep: stepReporter(run, 'inverting'),
      onWarning: (message) =>
        run.onProgress?.({ phase: 'warning', step: 0, total: 0, detail: message }),
      ...(hooks.onState ? { onState: hooks.onState } : {}),
    },
  );
  return {
    inversion: {
      top: pair.top,
      next: pair.next,
      shape,
      levels,
      gamma: p.gamma,
      guidance: p.guidance,
      prompt: p.prompt,
      negativePrompt: p.negativePrompt,
      steps: p.steps,
      strength: p.strength,
      width: image.width,
      height: image.height,
    },
    latent: pair.source,
    nfe: pair.nfe,
    seconds: secondsSince(started),
  };
}

export interface ReplayOptions {
  /** The edit prompt; absent replays the source prompt. */
  prompt?: string;
  negativePrompt?: string;
  guidance?: number;
  /** A masked replay: blend towards the source trajectory (ALGORITHMS.md §5). */
  blend?: MaskBlend;
  /** Receives each state of the replay (copy what you keep). */
  onState?: (index: number, z: Float64Array) => void;
}

/** The replay's final latent, not decoded. */
export async function replayLatent(
  model: DiffusionModel,
  inversion: InversionState,
  options: ReplayOptions,
  run: RunOptions = {},
): Promise<Omit<ReplayOutput, 'image'>> {
  const started = performance.now();
  requireInvertible(model);
  const conditioning = await conditioningOf(
    model,
    options.prompt ?? inversion.prompt,
    options.negativePrompt ?? inversion.negativePrompt,
  );
  const result = await replayBdia(
    scheduleOf(model),
    { top: inversion.top, next: inversion.next },
    inversion.levels,
    guidedEstimator(
      model,
      inversion.shape.slice(1),
      conditioning,
      options.guidance ?? inversion.guidance,
      run.signal,
    ),
    {
      gamma: inversion.gamma,
      ...(run.signal ? { signal: run.signal } : {}),
      onStep: stepReporter(run, 'replaying'),
      ...(options.blend ? { blend: options.blend } : {}),
      ...(options.onState ? { onState: options.onState } : {}),
    },
  );
  return { latent: result.sample, nfe: result.nfe, seconds: secondsSince(started) };
}

export async function replayInversion(
  model: DiffusionModel,
  inversion: InversionState,
  options: ReplayOptions,
  run: RunOptions = {},
): Promise<ReplayOutput> {
  const result = await replayLatent(model, inversion, options, run);
  run.onProgress?.({ phase: 'decoding', step: 0, total: 1 });
  const image = await decodeState(model, result.latent, inversion.shape);
  return { ...result, image };
}

/** [−1, 1] values → the 0–255 scale of an 8-bit image. */
const TO_8BIT = 127.5;

export async function roundtrip(
  model: DiffusionModel,
  image: ModelImage,
  input: RoundtripParams,
  run: RunOptions = {},
): Promise<RoundtripReport> {
  const started = performance.now();
  requireInvertible(model);
  const { method, ...rest } = roundtripParamsSchema.parse(input);
  let replayed: Float64Array;
  let source: Float64Array;
  let shape: number[];
  let levels: number[];
  let nfe: number;
  let gamma: number | undefined;
  if (method === 'bdia') {
    const inverted = await invertImage(model, image, rest, run);
    const back = await replayInversion(model, inverted.inversion, {}, run);
    replayed = back.latent;
    source = inverted.latent;
    shape = inverted.inversion.shape;
    levels = inverted.inversion.levels;
    gamma = inverted.inversion.gamma;
    nfe = inverted.nfe + back.nfe;
  } else {
    const p = resolveInvert(model, rest);
    levels = editLevels(
      model.manifest.schedule.trainSteps,
      p.steps,
      p.strength,
      stepsOffset(model),
    ).levels;
    const encoded = await encode(model, image);
    source = encoded.latent;
    shape = encoded.shape;
    const conditioning = await conditioningOf(model, p.prompt, p.negativePrompt);
    const eps = guidedEstimator(model, shape.slice(1), conditioning, p.guidance, run.signal);
    const schedule = scheduleOf(model);
    const signal = run.signal ? { signal: run.signal } : {};
    const up = await invertDdimNaive(schedule, source, levels, eps, {
      ...signal,
      onStep: stepReporter(run, 'inverting'),
    });
    const down = await sampleDdim(schedule, up.sample, levels, eps, {
      ...signal,
      onStep: stepReporter(run, 'replaying'),
    });
    replayed = down.sample;
    nfe = up.nfe + down.nfe;
  }
  run.onProgress?.({ phase: 'decoding', step: 0, total: 2 });
  const out = await decodeState(model, replayed, shape);
  const reference = await decodeState(model, source, shape);
  const report: RoundtripReport = {
    method,
    latentMaxAbsError: maxAbsDiff(replayed, source),
    pixelMaxAbsError: maxAbsDiff(out.chw, reference.chw) * TO_8BIT,
    vaeMaxAbsError:
      reference.chw.length === image.chw.length
        ? maxAbsDiff(reference.chw, image.chw) * TO_8BIT
        : Number.NaN,
    nfe,
    steps: method === 'bdia' ? levels.length - 2 : levels.length - 1,
    seconds: secondsSince(started),
    levels,
    image: out,
  };
  if (gamma !== undefined) report.gamma = gamma;
  return report;
}
