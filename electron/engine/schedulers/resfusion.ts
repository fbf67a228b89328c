// Resfusion restoration (Shi et al., NeurIPS 2024; ALGORITHMS.md §3): a diffusion that starts
// from the degraded image instead of pure noise, on a schedule truncated where √ᾱ = 0.5, so a
// restoration takes T' (5) network calls. Forward process and training target for the oracle too.
import { RetraceError } from '../errors.js';
import {
  NetworkCalls,
  rowLength,
  sameTimestep,
  type LoopOptions,
  type LoopResult,
  type NoiseEstimator,
} from './loop.js';
import { scheduleLength, type NoiseSchedule } from './schedule.js';

function tables(schedule: NoiseSchedule, t: number) {
  if (!Number.isInteger(t) || t < 0 || t >= scheduleLength(schedule)) {
    throw new RetraceError(
      'BAD_INPUT',
      `resfusion: step ${t} is outside [0, ${scheduleLength(schedule) - 1}]`,
    );
  }
  return {
    alpha: schedule.alphas[t] as number,
    beta: schedule.betas[t] as number,
    alphaBar: schedule.alphasCumprod[t] as number,
  };
}

/** x_t = √ᾱ_t·x0 + (1 − √ᾱ_t)·R + √(1 − ᾱ_t)·ε with R = degraded − x0 (pixels in [−1, 1]). */
export function resfusionForward(
  schedule: NoiseSchedule,
  clean: Float64Array,
  degraded: Float64Array,
  t: number,
  noise: Float64Array,
): Float64Array {
  const { alphaBar } = tables(schedule, t);
  const a = Math.sqrt(alphaBar);
  const s = Math.sqrt(1 - alphaBar);
  const x = new Float64Array(clean.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = clean[i] as number;
    x[i] = a * x0 + (1 - a) * ((degraded[i] as number) - x0) + s * (noise[i] as number);
  }
  return x;
}

/** k_t = (1 − √α_t)·√(1 − ᾱ_t)/β_t, the weight of the residual in the resnoise target. */
export function resnoiseCoefficient(schedule: NoiseSchedule, t: number): number {
  const { alpha, beta, alphaBar } = tables(schedule, t);
  return ((1 - Math.sqrt(alpha)) * Math.sqrt(1 - alphaBar)) / beta;
}

/** The training target ("resnoise") at step t: ε + k_t·R, R = degraded − clean. */
export function resnoiseTarget(
  schedule: NoiseSchedule,
  t: number,
  noise: Float64Array,
  clean: Float64Array,
  degraded: Float64Array,
): Float64Array {
  const k = resnoiseCoefficient(schedule, t);
  const target = new Float64Array(noise.length);
  for (let i = 0; i < target.length; i++) {
    target[i] = (noise[i] as number) + k * ((degraded[i] as number) - (clean[i] as number));
  }
  return target;
}

/**
 * Standard normal noise for one purpose, B·n values like the state. Stream 0 is the initial ε;
 * stream k (1 … T'−1) is the z added after the update at t = T' − k (none after t = 0). A tiled
 * restore answers each stream from one pixel-indexed field (runtime/rng.ts GaussianField with
 * stream k) so that overlapping tiles agree.
 */
export type ResfusionNoise = (stream: number) => Float64Array;

export interface ResfusionOptions extends LoopOptions {
  /** Rows in `degraded` (default 1). */
  batch?: number;
}

/**
 * Restores `degraded` (B rows of C·H·W in [−1, 1]): x = √ᾱ_{T'−1}·x̂0 + √(1−ᾱ_{T'−1})·ε, then for
 * t = T'−1 … 0, r = net(concat[x, x̂0], t) and x = (x − β_t/√(1−ᾱ_t)·r)/√α_t + √β̃_t·z (no z at
 * t = 0), β̃_t = β_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t); the result is clamped to [−1, 1]. The network input
 * is each row's x followed by its degraded image (a channel concat, B·2n values); its timestep is
 * the 0-based index t. NFE = T'.
 */
export async function restoreResfusion(
  schedule: NoiseSchedule,
  degraded: Float64Array,
  net: NoiseEstimator,
  noise: ResfusionNoise,
  options: ResfusionOptions = {},
): Promise<LoopResult> {
  const batch = options.batch ?? 1;
  const n = rowLength(degraded, batch);
  const steps = scheduleLength(schedule);
  const draw = (stream: number) => {
    const z = noise(stream);
    if (z.length !== degraded.length) {
      throw new RetraceError(
        'BAD_INPUT',
        `resfusion: noise stream ${stream} has ${z.length} values, expected ${degraded.length}`,
      );
    }
    return z;
  };
  const network = new NetworkCalls(net, steps, options);
  const start = tables(schedule, steps - 1).alphaBar;
  const epsilon = draw(0);
  // The network input: each row's x followed by its degraded image. The degraded halves are
  // written once; the x halves are the state itself, updated in place step after step (the
  // estimator reads its input before it resolves and keeps no reference to it).
  const input = new Float64Array(2 * degraded.length);
  for (let b = 0; b < batch; b++) input.set(degraded.subarray(b * n, (b + 1) * n), (2 * b + 1) * n);
  const a0 = Math.sqrt(start);
  const s0 = Math.sqrt(1 - start);
  for (let b = 0; b < batch; b++) {
    for (let i = 0, o = 2 * b * n, k = b * n; i < n; i++, o++, k++) {
      input[o] = a0 * (degraded[k] as number) + s0 * (epsilon[k] as number);
    }
  }
  for (let t = steps - 1; t >= 0; t--) {
    const r = await network.call(input, sameTimestep(t, batch), degraded.length);
    const { alpha, beta, alphaBar } = tables(schedule, t);
    const c = beta / Math.sqrt(1 - alphaBar);
    const inv = 1 / Math.sqrt(alpha);
    // x ← (x − c·r)/√α_t, plus √β̃_t·z except after the last step.
    const z = t > 0 ? draw(steps - t) : undefined;
    const std = z
      ? Math.sqrt((beta * (1 - (schedule.alphasCumprod[t - 1] as number))) / (1 - alphaBar))
      : 0;
    for (let b = 0; b < batch; b++) {
      const o = 2 * b * n;
      const k = b * n;
      if (z) {
        for (let i = 0; i < n; i++) {
          input[o + i] =
            ((input[o + i] as number) - c * (r[k + i] as number)) * inv +
            std * (z[k + i] as number);
        }
      } else {
        for (let i = 0; i < n; i++) {
          input[o + i] = ((input[o + i] as number) - c * (r[k + i] as number)) * inv;
        }
      }
    }
  }
  const x = new Float64Array(degraded.length);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < n; i++) {
      x[b * n + i] = Math.min(1, Math.max(-1, input[2 * b * n + i] as number));
    }
  }
  return { sample: x, nfe: network.count };
}
