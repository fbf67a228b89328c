// DDIM, the building block of every sampler here (ALGORITHMS.md §0): the deterministic map φ,
// the η-step with caller-supplied noise, v-prediction and guidance conversions, and a sampling
// loop over an explicit level list.
import { RetraceError } from '../errors.js';
import {
  checkLevels,
  NetworkCalls,
  rowLength,
  sameTimestep,
  type LoopOptions,
  type LoopResult,
  type NoiseEstimator,
  type Prediction,
} from './loop.js';
import { alphaBarAt, type NoiseSchedule } from './schedule.js';

export interface DdimStepResult {
  /** The state at the target level. */
  prevSample: Float64Array;
  /** x̂0 = (z − √(1−ᾱ_from)·ε)/√ᾱ_from. */
  predOriginal: Float64Array;
}

/**
 * One DDIM update of `z` (at ᾱ_from) to ᾱ_to with noise estimate `eps`, as diffusers'
 * DDIMScheduler.step computes it: x̂0 = (z − √(1−ᾱ_from)ε)/√ᾱ_from, then
 * √ᾱ_to·x̂0 + √(1 − ᾱ_to − σ²)·ε + σ·noise with σ = η·√((1−ᾱ_to)/(1−ᾱ_from)·(1 − ᾱ_from/ᾱ_to)).
 * `noise` (standard normal, same length) is required when η > 0 and ignored otherwise.
 */
export function ddimStep(
  z: Float64Array,
  eps: Float64Array,
  alphaBarFrom: number,
  alphaBarTo: number,
  eta = 0,
  noise?: Float64Array,
): DdimStepResult {
  if (eps.length !== z.length) throw new RangeError('ddimStep: eps and z differ in length');
  const aFrom = Math.sqrt(alphaBarFrom);
  const sFrom = Math.sqrt(1 - alphaBarFrom);
  const aTo = Math.sqrt(alphaBarTo);
  const std =
    eta === 0
      ? 0
      : eta * Math.sqrt(((1 - alphaBarTo) / (1 - alphaBarFrom)) * (1 - alphaBarFrom / alphaBarTo));
  const direction = Math.sqrt(1 - alphaBarTo - std * std);
  if (std > 0 && noise?.length !== z.length) {
    throw new RetraceError('BAD_INPUT', 'ddimStep: η > 0 needs a noise array as long as the state');
  }
  const prevSample = new Float64Array(z.length);
  const predOriginal = new Float64Array(z.length);
  for (let i = 0; i < z.length; i++) {
    const e = eps[i] as number;
    const x0 = ((z[i] as number) - sFrom * e) / aFrom;
    predOriginal[i] = x0;
    prevSample[i] = aTo * x0 + direction * e;
  }
  if (std > 0 && noise) {
    for (let i = 0; i < z.length; i++)
      prevSample[i] = (prevSample[i] as number) + std * (noise[i] as number);
  }
  return { prevSample, predOriginal };
}

/** φ(z, ε; λ→μ) = a(μ)·(z − σ(λ)ε)/a(λ) + σ(μ)·ε, given ᾱ(λ) and ᾱ(μ): denoising or noising. */
export function ddimMap(
  z: Float64Array,
  eps: Float64Array,
  alphaBarFrom: number,
  alphaBarTo: number,
): Float64Array {
  return ddimStep(z, eps, alphaBarFrom, alphaBarTo).prevSample;
}

/** A v-prediction output as ε at the level it was evaluated at: ε = σ·z + a·v. */
export function vToEpsilon(v: Float64Array, z: Float64Array, alphaBar: number): Float64Array {
  const a = Math.sqrt(alphaBar);
  const s = Math.sqrt(1 - alphaBar);
  const eps = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) eps[i] = s * (z[i] as number) + a * (v[i] as number);
  return eps;
}

/** The model output of one call as ε, converting v-prediction row by row at each row's ᾱ. */
export function toEpsilon(
  out: Float64Array,
  z: Float64Array,
  alphaBars: readonly number[],
  prediction: Prediction,
): Float64Array {
  if (prediction === 'epsilon') return out;
  const n = z.length / alphaBars.length;
  const eps = new Float64Array(out.length);
  alphaBars.forEach((alphaBar, b) => {
    const rows = [b * n, (b + 1) * n] as const;
    eps.set(vToEpsilon(out.subarray(...rows), z.subarray(...rows), alphaBar), b * n);
  });
  return eps;
}

/**
 * Classifier-free guidance: `both` is one batched call of 2B rows, the B unconditional rows first,
 * then the B conditional ones; returns ε_u + g·(ε_c − ε_u) for the B rows.
 */
export function combineGuidance(both: Float64Array, guidance: number): Float64Array {
  if (both.length % 2 !== 0) throw new RangeError('combineGuidance: odd number of values');
  const half = both.length / 2;
  const eps = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const u = both[i] as number;
    eps[i] = u + guidance * ((both[half + i] as number) - u);
  }
  return eps;
}

export interface DdimSampleOptions extends LoopOptions {
  /** Rows in `z` (default 1). */
  batch?: number;
  /** 0 (default) is deterministic DDIM, 1 is DDPM-like. */
  eta?: number;
  /** Standard normal noise for the update of loop step `stepIndex` (0 first); needed if η > 0. */
  noise?: (stepIndex: number) => Float64Array;
  prediction?: Prediction;
  /** Sees (and may change, e.g. blend towards a source trajectory) the state at level index k−1 after step k. */
  afterStep?: (index: number, z: Float64Array) => void;
}

/**
 * DDIM sampling down an increasing level list: `z` sits at the last level λ_M; step k = M … 1
 * calls the network at λ_k and moves to λ_{k−1}. With {@link samplingLevels} this is diffusers'
 * DDIM loop (the last step lands on ᾱ_0). NFE = M.
 */
export async function sampleDdim(
  schedule: NoiseSchedule,
  z: Float64Array,
  levels: readonly number[],
  eps: NoiseEstimator,
  options: DdimSampleOptions = {},
): Promise<LoopResult> {
  checkLevels(schedule, levels);
  const batch = options.batch ?? 1;
  rowLength(z, batch);
  const eta = options.eta ?? 0;
  if (eta > 0 && !options.noise) {
    throw new RetraceError('BAD_INPUT', 'eta > 0 needs a noise source');
  }
  const steps = levels.length - 1;
  const network = new NetworkCalls(eps, steps, options);
  let state: Float64Array = Float64Array.from(z);
  for (let k = steps; k >= 1; k--) {
    const level = levels[k] as number;
    const alphaBar = alphaBarAt(schedule, level);
    const out = await network.call(state, sameTimestep(level, batch));
    const e = toEpsilon(
      out,
      state,
      new Array<number>(batch).fill(alphaBar),
      options.prediction ?? 'epsilon',
    );
    const noise = eta > 0 ? options.noise?.(steps - k) : undefined;
    state = ddimStep(
      state,
      e,
      alphaBar,
      alphaBarAt(schedule, levels[k - 1] as number),
      eta,
      noise,
    ).prevSample;
    options.afterStep?.(k - 1, state);
  }
  return { sample: state, nfe: network.count };
}
