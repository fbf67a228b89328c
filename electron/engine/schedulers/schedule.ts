// Noise schedules and timestep grids, built in float64 from a pack's `schedule` spec: the tables
// every sampler reads (β, α, ᾱ) and the level lists DDIM, BDIA and naive inversion walk.
import { RetraceError } from '../errors.js';
import type { ScheduleSpec } from '../packs/schema.js';

export interface NoiseSchedule {
  readonly kind: ScheduleSpec['kind'];
  /** β_t, α_t = 1 − β_t and ᾱ_t = ∏_{s≤t} α_s, indexed by timestep t = 0 … length − 1. */
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  readonly alphasCumprod: Float64Array;
}

/** numpy.linspace in float64, operation for operation (start + i·step, last value = stop). */
function linspace(start: number, stop: number, count: number): Float64Array {
  const out = new Float64Array(count);
  const step = (stop - start) / (count - 1);
  for (let i = 0; i < count; i++) out[i] = i * step + start;
  out[count - 1] = stop;
  return out;
}

function fromBetas(kind: ScheduleSpec['kind'], betas: Float64Array): NoiseSchedule {
  const alphas = new Float64Array(betas.length);
  const alphasCumprod = new Float64Array(betas.length);
  let product = 1;
  for (let t = 0; t < betas.length; t++) {
    alphas[t] = 1 - (betas[t] as number);
    product *= alphas[t] as number;
    alphasCumprod[t] = product;
  }
  return { kind, betas, alphas, alphasCumprod };
}

/**
 * Resfusion's truncation (§3): cut the schedule at the first t with √ᾱ_t ≤ 0.5, pinning ᾱ_t to
 * exactly 0.25 when it undershoots by more than 0.01, and keep only the T' = 1 + argmin|√ᾱ − 0.5|
 * entries the network is trained and sampled on (the tail past that point is never used).
 */
function truncateAtHalf(full: NoiseSchedule): NoiseSchedule {
  const sqrtAlphaBar = (t: number) => Math.sqrt(full.alphasCumprod[t] as number);
  let r = 0;
  while (r < full.alphasCumprod.length && !(sqrtAlphaBar(r) <= 0.5)) r++;
  if (r === 0 || r === full.alphasCumprod.length) {
    throw new RetraceError(
      'BAD_INPUT',
      `schedule: resfusion_truncated needs √ᾱ to cross 0.5 after the first step; it ${r === 0 ? 'starts below' : 'never reaches'} 0.5`,
    );
  }
  const betas = full.betas.slice(0, r + 1);
  const alphas = full.alphas.slice(0, r + 1);
  const alphasCumprod = full.alphasCumprod.slice(0, r + 1);
  if (0.5 - sqrtAlphaBar(r) > 0.01) {
    alphasCumprod[r] = 0.25;
    alphas[r] = 0.25 / (alphasCumprod[r - 1] as number);
    betas[r] = 1 - (alphas[r] as number);
  }
  // √ᾱ decreases, so the entry closest to 0.5 is r − 1 or r; a tie goes to the earlier (argmin).
  const distance = (t: number) => Math.abs(Math.sqrt(alphasCumprod[t] as number) - 0.5);
  const kept = distance(r) < distance(r - 1) ? r + 1 : r;
  return {
    kind: full.kind,
    betas: betas.slice(0, kept),
    alphas: alphas.slice(0, kept),
    alphasCumprod: alphasCumprod.slice(0, kept),
  };
}

/**
 * The schedule a pack describes. `linear`: β = linspace(betaStart, betaEnd, T); `scaled_linear`
 * (Stable Diffusion): β = linspace(√betaStart, √betaEnd, T)²; `resfusion_truncated`: β =
 * linspace(betaStart, betaEnd, T) — the manifest holds the actual endpoints, 0.1/T and 20/T for
 * Resfusion (see {@link resfusionScheduleSpec}) — then truncated, so its tables have T' entries.
 */
export function buildSchedule(spec: ScheduleSpec): NoiseSchedule {
  const { kind, betaStart, betaEnd, trainSteps } = spec;
  switch (kind) {
    case 'linear':
      return fromBetas(kind, linspace(betaStart, betaEnd, trainSteps));
    case 'scaled_linear':
      return fromBetas(
        kind,
        linspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), trainSteps).map((b) => b * b),
      );
    case 'resfusion_truncated':
      return truncateAtHalf(fromBetas(kind, linspace(betaStart, betaEnd, trainSteps)));
  }
}

/** Resfusion's spec for nominal T: β from 0.1/T to 20/T (DDPM's 1e-4 … 0.02 scaled by 1000/T). */
export function resfusionScheduleSpec(trainSteps: number): ScheduleSpec {
  return {
    kind: 'resfusion_truncated',
    betaStart: 0.1 / trainSteps,
    betaEnd: 20 / trainSteps,
    trainSteps,
  };
}

/** Number of timesteps the schedule has tables for (T, or T' for a truncated schedule). */
export function scheduleLength(schedule: NoiseSchedule): number {
  return schedule.alphasCumprod.length;
}

/**
 * ᾱ at an integer level. Every negative level means ᾱ_0: the "final alpha" that the step after
 * the last grid point lands on (diffusers' DDIMScheduler with set_alpha_to_one = False).
 */
export function alphaBarAt(schedule: NoiseSchedule, level: number): number {
  if (!Number.isInteger(level) || level >= schedule.alphasCumprod.length) {
    throw new RetraceError(
      'BAD_INPUT',
      `level ${level} is not an integer timestep below ${schedule.alphasCumprod.length}`,
    );
  }
  return schedule.alphasCumprod[Math.max(level, 0)] as number;
}

function checkSteps(trainSteps: number, steps: number, offset: number): number {
  if (!Number.isInteger(steps) || steps < 1 || steps > trainSteps) {
    throw new RetraceError(
      'BAD_INPUT',
      `steps must be an integer in [1, ${trainSteps}], got ${steps}`,
    );
  }
  const stride = Math.floor(trainSteps / steps);
  if (!Number.isInteger(offset) || offset < 0 || (steps - 1) * stride + offset > trainSteps - 1) {
    throw new RetraceError(
      'BAD_INPUT',
      `steps offset ${offset} puts the top timestep past ${trainSteps - 1}`,
    );
  }
  return stride;
}

/**
 * The network timesteps of an N-step sampler with "leading" spacing, in sampling order:
 * t_i = i·floor(T/N) + offset for i = N−1 … 0 (diffusers' `set_timesteps`; Stable Diffusion
 * imports use offset 1).
 */
export function timestepGrid(trainSteps: number, steps: number, offset = 0): number[] {
  const stride = checkSteps(trainSteps, steps, offset);
  return Array.from({ length: steps }, (_, k) => (steps - 1 - k) * stride + offset);
}

/**
 * The same grid as an increasing level list for the level-based loops: [t_0 − stride, t_0, t_1,
 * …, t_{N−1}]. The first level (negative, so ᾱ_0) is where the last DDIM step lands; the sampler
 * starts at the last level and makes N steps.
 */
export function samplingLevels(trainSteps: number, steps: number, offset = 0): number[] {
  const stride = checkSteps(trainSteps, steps, offset);
  return Array.from({ length: steps + 1 }, (_, k) => (k - 1) * stride + offset);
}

export interface EditLevels {
  /** λ_0 < … < λ_M, the first M + 1 entries of {@link samplingLevels}. */
  levels: number[];
  /** M: how many grid steps the edit keeps; store it, never recompute it from a strength. */
  kept: number;
}

/**
 * Levels for editing a real image with N steps at strength s (BDIA §1): M = floor(N·s) steps are
 * kept — the rounding of diffusers' img2img, `int(N·strength)`, float product and all — computed
 * once here and stored with the inversion. SD preset N = 50, s = 0.8: [−20, 0, 20, …, 780], M = 40.
 */
export function editLevels(
  trainSteps: number,
  steps: number,
  strength: number,
  offset = 0,
): EditLevels {
  if (!(strength > 0 && strength <= 1)) {
    throw new RetraceError('BAD_INPUT', `strength must be in (0, 1], got ${strength}`);
  }
  const kept = Math.floor(steps * strength);
  if (kept < 1) {
    throw new RetraceError(
      'BAD_INPUT',
      `strength ${strength} keeps no step out of ${steps}; raise the strength or the steps`,
    );
  }
  return { levels: samplingLevels(trainSteps, steps, offset).slice(0, kept + 1), kept };
}
