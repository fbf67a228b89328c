// Text-to-image: validate → encode prompt → levels → initial noise per seed → loop (DDIM, DDIM
// with Time-Shift, or BDIA) → decode. `count` images come from seeds S … S+K−1, sampled in
// batches so that the network sees several rows per call.
import { generateParamsSchema, type GenerateParams, type TimeShift } from '../../contract/jobs.js';
import { RetraceError } from '../errors.js';
import type { RunOptions } from '../progress.js';
import { GaussianField, randomSeed } from '../runtime/rng.js';
import { sampleBdia } from '../schedulers/bdia.js';
import { sampleDdim } from '../schedulers/ddim.js';
import { samplingLevels } from '../schedulers/schedule.js';
import { sampleTimeShift } from '../schedulers/time-shift.js';
import {
  ENGINE_DEFAULTS,
  guidedEstimator,
  latentShape,
  outputSize,
  requireTask,
  scheduleOf,
  secondsSince,
  stepReporter,
  stepsOffset,
} from './common.js';
import type { DiffusionModel } from './model.js';

/** Rows sampled together in one network call (two with guidance). */
const BATCH_ROWS = 4;

/** Noise streams of one seed: 0 is the initial latent, 1 + k the η-noise of loop step k. */
const INITIAL_STREAM = 0;

export interface ResolvedGenerate {
  prompt: string;
  negativePrompt: string;
  steps: number;
  guidance: number;
  seed: number;
  count: number;
  sampler: 'ddim' | 'bdia';
  gamma: number;
  eta: number;
  timeShift: TimeShift | null;
  width: number;
  height: number;
  model: string;
}

export interface GeneratedImage {
  seed: number;
  /** Decoded image, [3, H, W] in [−1, 1]. */
  chw: Float32Array;
  width: number;
  height: number;
  /** Where Time-Shift moved each step (per step), when it was on. */
  shiftedLevels?: number[];
}

export interface GenerateOutput {
  params: ResolvedGenerate;
  images: GeneratedImage[];
  nfe: number;
  seconds: number;
  levels: number[];
}

/** The user's parameters over the pack's defaults over the engine's. */
export function resolveGenerate(model: DiffusionModel, input: GenerateParams): ResolvedGenerate {
  const p = generateParamsSchema.parse(input);
  const d = model.manifest.defaults ?? {};
  const size = outputSize(model, p.width, p.height);
  const sampler = p.sampler;
  const steps = p.steps ?? d.steps ?? ENGINE_DEFAULTS.steps;
  // BDIA from noise: γ near 0.5 at few steps, near 1 at many (ALGORITHMS.md §1).
  const bdiaGamma = steps <= 10 ? 0.5 : Math.min(1, 0.5 + (steps - 10) / 60);
  const timeShift = p.timeShift === undefined ? (d.timeShift ?? null) : p.timeShift;
  if (p.eta > 0 && sampler === 'bdia') {
    throw new RetraceError(
      'BAD_INPUT',
      'eta: BDIA is deterministic; use --sampler ddim for eta > 0',
    );
  }
  if (timeShift && sampler === 'bdia' && timeShift.variant !== 'paper') {
    throw new RetraceError(
      'BAD_INPUT',
      `timeShift.variant: BDIA supports only the paper rule, got ${timeShift.variant}`,
    );
  }
  return {
    model: model.source.id,
    prompt: p.prompt,
    negativePrompt: p.negativePrompt || d.negativePrompt || '',
    steps,
    guidance: p.guidance ?? d.guidance ?? ENGINE_DEFAULTS.guidance,
    seed: p.seed ?? randomSeed(),
    count: p.count,
    sampler,
    gamma: p.gamma ?? bdiaGamma,
    eta: p.eta,
    timeShift: timeShift && timeShift.window > 0 ? timeShift : null,
    width: size.width,
    height: size.height,
  };
}

export async function generate(
  model: DiffusionModel,
  input: GenerateParams,
  run: RunOptions = {},
): Promise<GenerateOutput> {
  const started = performance.now();
  requireTask(model, 'text-to-image');
  const params = resolveGenerate(model, input);
  const schedule = scheduleOf(model);
  const levels = samplingLevels(
    model.manifest.schedule.trainSteps,
    params.steps,
    stepsOffset(model),
  );
  const shape = latentShape(model, params.width, params.height);
  const n = shape.reduce((a, b) => a * b, 1);
  run.onProgress?.({ phase: 'encoding prompt', step: 0, total: 1 });
  const conditioning = model.manifest.components.textEncoder
    ? await model.conditioning(params.prompt, params.negativePrompt)
    : undefined;
  const images: GeneratedImage[] = [];
  let nfe = 0;
  const batches = Math.ceil(params.count / BATCH_ROWS);
  const totalCalls = batches * params.steps;
  for (let first = 0; first < params.count; first += BATCH_ROWS) {
    const seeds = Array.from(
      { length: Math.min(BATCH_ROWS, params.count - first) },
      (_, i) => (params.seed + first + i) % 2 ** 32,
    );
    const B = seeds.length;
    const zT = new Float64Array(B * n);
    seeds.forEach((seed, b) => new GaussianField(seed, INITIAL_STREAM).fill(zT.subarray(b * n)));
    const etaNoise = (step: number) => {
      const out = new Float64Array(B * n);
      seeds.forEach((seed, b) =>
        new GaussianField(seed, 1 + step).fill(out.subarray(b * n, (b + 1) * n)),
      );
      return out;
    };
    const done = nfe;
    const loop = {
      batch: B,
      prediction: model.manifest.prediction === 'v_prediction' ? 'v_prediction' : 'epsilon',
      ...(run.signal ? { signal: run.signal } : {}),
      onStep: (step: number) =>
        stepReporter(run, 'sampling', `${first + B}/${params.count}`)(done + step, totalCalls),
    } as const;
    const eps = guidedEstimator(model, shape, conditioning, params.guidance, run.signal);
    let sample: Float64Array;
    let shifted: number[][] | undefined;
    if (params.sampler === 'bdia') {
      const result = await sampleBdia(schedule, zT, levels, eps, {
        ...loop,
        gamma: params.gamma,
        ...(params.timeShift
          ? { timeShift: { window: params.timeShift.window, cutoff: params.timeShift.cutoff } }
          : {}),
      });
      sample = result.sample;
      nfe += result.nfe;
    } else if (params.timeShift) {
      const result = await sampleTimeShift(schedule, zT, levels, eps, {
        ...loop,
        window: params.timeShift.window,
        cutoff: params.timeShift.cutoff,
        variant: params.timeShift.variant,
        eta: params.eta,
        noise: etaNoise,
      });
      sample = result.sample;
      shifted = result.shiftedLevels;
      nfe += result.nfe;
    } else {
      const result = await sampleDdim(schedule, zT, levels, eps, {
        ...loop,
        eta: params.eta,
        noise: etaNoise,
      });
      sample = result.sample;
      nfe += result.nfe;
    }
    for (let b = 0; b < B; b++) {
      run.onProgress?.({ phase: 'decoding', step: first + b, total: params.count });
      const row = sample.subarray(b * n, (b + 1) * n);
      const decoded =
        model.manifest.space === 'latent'
          ? await model.decodeLatent(row, shape)
          : { chw: Float32Array.from(row), width: params.width, height: params.height };
      const image: GeneratedImage = {
        seed: seeds[b] as number,
        chw: decoded.chw,
        width: decoded.width,
        height: decoded.height,
      };
      if (shifted) image.shiftedLevels = shifted.map((step) => step[b] as number);
      images.push(image);
    }
  }
  return { params, images, nfe, seconds: secondsSince(started), levels };
}
