// Time-Shift sampling (Li et al., ICLR 2024; ALGORITHMS.md §2): after each DDIM step, each sample
// is re-labelled with the timestep whose noise level matches its own variance, which counters
// exposure bias at no extra network cost. The timestep choice is also exported for BDIA's G_k.
import type { TimeShiftSettings } from '../packs/schema.js';
import { RetraceError } from '../errors.js';
import { ddimStep, toEpsilon } from './ddim.js';
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
import { alphaBarAt, scheduleLength, type NoiseSchedule } from './schedule.js';

export type TimeShiftVariant = TimeShiftSettings['variant'];

/** Variance of one sample's entries, accumulated in float64 with the N − 1 divisor. */
export function sampleVariance(row: Float64Array): number {
  if (row.length < 2) throw new RangeError('sampleVariance needs at least two values');
  let mean = 0;
  for (const v of row) mean += v;
  mean /= row.length;
  let sum = 0;
  for (const v of row) sum += (v - mean) * (v - mean);
  return sum / (row.length - 1);
}

export interface ShiftCandidates {
  /** The nominal grid time c of the state. */
  nominal: number;
  /** The neighbouring grid levels; τ stays strictly between them (either may be absent). */
  below?: number;
  above?: number;
  /** Window width w: τ ∈ [c − h, c + h] with h = floor(w/2). */
  window: number;
  /** No shift once c ≤ cutoff (t_c). */
  cutoff: number;
}

/**
 * The timestep τ whose marginal variance best matches `variance`: argmin over the candidates of
 * (variance − target(τ))², ties to the smallest τ, with target(τ) = 1 − ᾱ_τ (the paper) or
 * ᾱ_τ·dataVariance + 1 − ᾱ_τ (the data-variance variant: dataVariance = v̂0 of the sample's
 * latest x̂0). Candidates: [c − h, c + h] ∩ [0, T − 1] ∩ (below, above). Returns c itself when
 * c ≤ cutoff or c < 0 (the "final alpha" level is never a network time).
 */
export function shiftedTimestep(
  schedule: NoiseSchedule,
  variance: number,
  candidates: ShiftCandidates,
  dataVariance = 0,
): number {
  const { nominal, window, cutoff } = candidates;
  if (nominal <= cutoff || nominal < 0) return nominal;
  const h = Math.floor(window / 2);
  const lo = Math.max(nominal - h, 0, (candidates.below ?? -Infinity) + 1);
  const hi = Math.min(
    nominal + h,
    scheduleLength(schedule) - 1,
    (candidates.above ?? Infinity) - 1,
  );
  let best = nominal;
  let bestDistance = Infinity;
  for (let tau = lo; tau <= hi; tau++) {
    const alphaBar = schedule.alphasCumprod[tau] as number;
    const d = variance - (alphaBar * dataVariance + 1 - alphaBar);
    if (d * d < bestDistance) {
      bestDistance = d * d;
      best = tau;
    }
  }
  return best;
}

export interface TimeShiftOptions extends LoopOptions {
  /** Window width w (w = 0 is plain DDIM, bit for bit) and cutoff t_c. */
  window: number;
  cutoff: number;
  /**
   * 'paper' (default): the new state is treated as being at τ — the next network call and the
   * "from" coefficients of the next update use τ. 'released-code': as Mingxiao-Li/TS-DPM's
   * sampler does it — the network is always called at the nominal time, and the *target* of the
   * current update is shifted, chosen from the variance of the state before the update.
   * 'data-variance': as 'paper', with the target ᾱ_τ·v̂0 + 1 − ᾱ_τ, v̂0 being the variance of
   * that sample's x̂0 from the step that produced it (our extension for latent models).
   */
  variant?: TimeShiftVariant;
  batch?: number;
  eta?: number;
  /** Standard normal noise for loop step `stepIndex` (all rows); needed if η > 0. */
  noise?: (stepIndex: number) => Float64Array;
  prediction?: Prediction;
}

export interface TimeShiftResult extends LoopResult {
  /**
   * For each step, per row, the level its output is taken to be at: the τ of the next network
   * call ('paper', 'data-variance') or the shifted target ('released-code'); the nominal level
   * where nothing was shifted.
   */
  shiftedLevels: number[][];
}

/**
 * DDIM sampling down `levels` (as {@link sampleDdim}) with a Time-Shift per batch row. The first
 * step is never shifted; NFE = M, as DDIM.
 */
export async function sampleTimeShift(
  schedule: NoiseSchedule,
  z: Float64Array,
  levels: readonly number[],
  eps: NoiseEstimator,
  options: TimeShiftOptions,
): Promise<TimeShiftResult> {
  checkLevels(schedule, levels);
  const batch = options.batch ?? 1;
  const n = rowLength(z, batch);
  const variant = options.variant ?? 'paper';
  const eta = options.eta ?? 0;
  if (!(Number.isInteger(options.window) && options.window >= 0)) {
    throw new RetraceError(
      'BAD_INPUT',
      `time shift window must be a non-negative integer, got ${options.window}`,
    );
  }
  if (eta > 0 && !options.noise)
    throw new RetraceError('BAD_INPUT', 'eta > 0 needs a noise source');
  const steps = levels.length - 1;
  const network = new NetworkCalls(eps, steps, options);
  const level = (k: number) => levels[k] as number;
  const candidates = (k: number): ShiftCandidates => ({
    nominal: level(k),
    ...(k > 0 ? { below: level(k - 1) } : {}),
    above: level(k + 1),
    window: options.window,
    cutoff: options.cutoff,
  });
  const shiftedLevels: number[][] = [];
  let state: Float64Array = Float64Array.from(z);
  // Where each row's state is taken to be: the network time and the "from" of its next update.
  let current = sameTimestep(level(steps), batch);
  for (let k = steps; k >= 1; k--) {
    const first = k === steps;
    const callTimes = variant === 'released-code' ? sameTimestep(level(k), batch) : current;
    const out = await network.call(state, callTimes);
    const e = toEpsilon(
      out,
      state,
      callTimes.map((t) => alphaBarAt(schedule, t)),
      options.prediction ?? 'epsilon',
    );
    const noise = eta > 0 ? options.noise?.(steps - k) : undefined;
    const next = new Float64Array(state.length);
    const targets: number[] = [];
    for (let b = 0; b < batch; b++) {
      const rows = [b * n, (b + 1) * n] as const;
      const row = state.subarray(...rows);
      let target = level(k - 1);
      if (variant === 'released-code' && !first && options.window > 0) {
        target = shiftedTimestep(schedule, sampleVariance(row), candidates(k - 1));
      }
      const from = callTimes[b] as number;
      const result = ddimStep(
        row,
        e.subarray(...rows),
        alphaBarAt(schedule, from),
        alphaBarAt(schedule, target),
        eta,
        noise?.subarray(...rows),
      );
      next.set(result.prevSample, b * n);
      if (variant !== 'released-code' && k > 1 && options.window > 0) {
        const dataVariance = variant === 'data-variance' ? sampleVariance(result.predOriginal) : 0;
        target = shiftedTimestep(
          schedule,
          sampleVariance(result.prevSample),
          candidates(k - 1),
          dataVariance,
        );
      }
      targets.push(target);
    }
    state = next;
    current = targets;
    shiftedLevels.push(targets);
  }
  return { sample: state, nfe: network.count, shiftedLevels };
}
