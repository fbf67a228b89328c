// Naive DDIM inversion, the inexact baseline BDIA is measured against: diffusers'
// DDIMInverseScheduler, which runs DDIM upwards using the noise estimated at the *target* level.
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
import { ddimMap, toEpsilon } from './ddim.js';
import { alphaBarAt, type NoiseSchedule } from './schedule.js';

export interface NaiveInversionOptions extends LoopOptions {
  batch?: number;
  prediction?: Prediction;
  /** Receives z_0 and each z_k as computed (copy what you keep). */
  onState?: (index: number, z: Float64Array) => void;
}

/**
 * Walks `z` from λ_0 up to λ_M: for k = 1 … M, z_k = φ(z_{k−1}, ε̂(z_{k−1}, λ_k); λ_{k−1}→λ_k).
 * The network sees the state still at λ_{k−1} but is told λ_k, which is why sampling back does not
 * return the start exactly. With {@link samplingLevels} (or editLevels) this is
 * DDIMInverseScheduler with set_alpha_to_one = False, step for step: its first step, from the
 * negative level (ᾱ_0) to t_0, is made too. NFE = M.
 */
export async function invertDdimNaive(
  schedule: NoiseSchedule,
  z: Float64Array,
  levels: readonly number[],
  eps: NoiseEstimator,
  options: NaiveInversionOptions = {},
): Promise<LoopResult> {
  checkLevels(schedule, levels);
  const batch = options.batch ?? 1;
  rowLength(z, batch);
  const steps = levels.length - 1;
  const network = new NetworkCalls(eps, steps, options);
  let state: Float64Array = Float64Array.from(z);
  options.onState?.(0, state);
  for (let k = 1; k <= steps; k++) {
    const target = levels[k] as number;
    const alphaBarSource = alphaBarAt(schedule, levels[k - 1] as number);
    const out = await network.call(state, sameTimestep(target, batch));
    // diffusers converts a v-prediction with the source ᾱ, although the network was told λ_k.
    const alphaBars = new Array<number>(batch).fill(alphaBarSource);
    const e = toEpsilon(out, state, alphaBars, options.prediction ?? 'epsilon');
    state = ddimMap(state, e, alphaBarSource, alphaBarAt(schedule, target));
    options.onState?.(k, state);
  }
  return { sample: state, nfe: network.count };
}
