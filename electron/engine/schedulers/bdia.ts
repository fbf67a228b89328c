// BDIA-DDIM (Zhang, Lewis, Kleijn, ECCV 2024; ALGORITHMS.md §1): DDIM made exactly invertible by
// coupling three consecutive states, z_{k−1} = γ·z_{k+1} + G_k(z_k). Sampling, inversion and
// replay from a stored pair, one network call per step.
//
// Exact to the bit, not to ~1e-15: in plain float64, γ·((a − g)/γ) + g is not always a, so a
// replay's states differ from the inversion's in the last bits, and now and then one of them
// rounds to another float32 on its way into the network (measured: 3–5 % of round trips on the
// tiny SD fixture ended ~5e-7 away). The states therefore live on a fixed-point lattice, integer
// multiples of QUANTUM, where the replay's update is exact integer arithmetic: the coupling term
// is rounded to the lattice, R(γ·z_{k+1}) is rounded to it, and their sum is exact. Rounding γ·u
// is many-to-one and monotone for γ ≤ 1, so the inversion can always pick a lattice z_{k+1} with
// R(γ·z_{k+1}) = z_{k−1} − R(G_k) exactly. Both directions then see bit-identical states.
import { RetraceError } from '../errors.js';
import { ddimMap, toEpsilon } from './ddim.js';
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
import { sampleVariance, shiftedTimestep } from './time-shift.js';

/** Below this γ, inversion errors grow like (1/γ)^M; inversion refuses it unless told otherwise. */
export const MIN_INVERSION_GAMMA = 0.85;

/**
 * The lattice step of BDIA states, 2^−40 (≈ 9.1e-13): far below float32's resolution, so the
 * network never notices it. A state is exact while |z| ≤ LATTICE_RANGE (2^12), where every
 * lattice value and the sum of two of them are integers times QUANTUM below 2^53.
 */
export const QUANTUM = 2 ** -40;
export const LATTICE_RANGE = 2 ** 12;
const INV_QUANTUM = 2 ** 40;

/** The lattice point nearest to v (exact: scaling by powers of two loses nothing). */
function onLattice(v: number): number {
  return Math.round(v * INV_QUANTUM) * QUANTUM;
}

/** `values` rounded to the lattice, in place; a value outside the exact range is refused. */
function toLattice(values: Float64Array, what: string): Float64Array {
  for (let i = 0; i < values.length; i++) values[i] = checkedLattice(values[i] as number, what);
  return values;
}

function checkedLattice(v: number, what: string): number {
  if (!(Math.abs(v) <= LATTICE_RANGE)) {
    throw new RetraceError(
      'RUNTIME',
      `BDIA: ${what} reached ${v}, outside the exact range ±${LATTICE_RANGE} ` +
        '(a network returned non-finite values, or a small gamma made the states diverge)',
    );
  }
  return onLattice(v);
}

/**
 * The lattice point u with R(γ·u) = t exactly (t on the lattice, 0 < γ ≤ 1). R(γ·u) is monotone
 * in u and moves by at most one lattice step per step of u, so such a u exists next to t/γ.
 */
function latticePreimage(t: number, gamma: number, what: string): number {
  let u = checkedLattice(t / gamma, what);
  for (let tries = 0; tries < 64; tries++) {
    const back = onLattice(gamma * u);
    if (back === t) return u;
    u += back < t ? QUANTUM : -QUANTUM;
  }
  throw new RetraceError('RUNTIME', `BDIA: no lattice preimage of ${t} under gamma ${gamma}`);
}

export interface BdiaOptions extends LoopOptions {
  /** γ ∈ [0, 1]: the weight of z_{k+1}; 0 is DDIM (not invertible). */
  gamma: number;
  batch?: number;
  prediction?: Prediction;
  /**
   * Time-Shift inside G_k (paper semantics): the network time and the "from" coefficients of
   * G_k are the τ chosen from z_k's own variance, a deterministic function of z_k, so inversion
   * stays exact. Applied at every G_k whose level is above the cutoff.
   */
  timeShift?: { window: number; cutoff: number };
  /**
   * A masked replay (ALGORITHMS.md §5): after each step the new state is blended with the source
   * trajectory's state at the same level, z ← m·z + (1−m)·z^s (lattice-rounded), with the weight
   * m ∈ [0, 1] per spatial position (broadcast over channels). Where m = 0 the state is the
   * source's, bit for bit; the blend is a function of the states, so replays stay exact.
   */
  blend?: MaskBlend;
  /**
   * Receives each state as it is computed (by its kept-level index), in a buffer that is reused
   * afterwards: copy what you keep.
   */
  onState?: (index: number, z: Float64Array) => void;
}

export interface MaskBlend {
  /** One weight per position of a channel plane (the state's length is a multiple of it). */
  weights: Float64Array;
  /** The source trajectory's state at kept level `index` (0 = the clean latent). */
  state(index: number): Float64Array;
}

/** Blends `z` (the state at level `index`) towards the source's where the weight is below 1. */
function applyBlend(blend: MaskBlend, index: number, z: Float64Array, what: string): void {
  const { weights } = blend;
  const source = blend.state(index);
  const plane = weights.length;
  if (source.length !== z.length || z.length % plane !== 0) {
    throw new RetraceError(
      'BAD_INPUT',
      `masked replay: a mask of ${plane} positions and source states of ${source.length} values do not fit states of ${z.length}`,
    );
  }
  for (let i = 0; i < z.length; i++) {
    const m = weights[i % plane] as number;
    if (m === 1) continue;
    z[i] =
      m === 0
        ? (source[i] as number)
        : checkedLattice(m * (z[i] as number) + (1 - m) * (source[i] as number), what);
  }
}

export interface BdiaInversionOptions extends BdiaOptions {
  /** Invert with γ below {@link MIN_INVERSION_GAMMA} anyway (a warning is still given). */
  allowLowGamma?: boolean;
  /** Receives warnings; without it they go to process.emitWarning. */
  onWarning?: (message: string) => void;
}

/** The pair an inversion stores and a replay starts from: (z_M, z_{M−1}), on the lattice. */
export interface BdiaPair {
  top: Float64Array;
  next: Float64Array;
}

export interface BdiaInversionResult extends BdiaPair {
  /** The start state x as the inversion used it (rounded to the lattice): what a replay returns. */
  source: Float64Array;
  nfe: number;
}

function checkGamma(gamma: number, lowest: number): void {
  if (!(gamma >= lowest && gamma <= 1)) {
    throw new RetraceError(
      'BAD_INPUT',
      `gamma must be in ${lowest === 0 ? '[0' : '(0'}, 1], got ${gamma}`,
    );
  }
}

/**
 * G_k(z) = φ(z, ε_k; λ_k→λ_{k−1}) − γ·φ(z, ε_k; λ_k→λ_{k+1}) with ε_k = ε̂(z, λ_k) (or, with a
 * Time-Shift, ε̂(z, τ) and τ in place of λ_k), row by row, rounded to the lattice and written
 * into `g`. One network call. Both maps are evaluated inline with the same operations, in the
 * same order, as `ddimMap` (x̂0 = (z − σ·ε)/a, then a'·x̂0 + σ'·ε).
 */
async function coupling(
  schedule: NoiseSchedule,
  z: Float64Array,
  levels: readonly number[],
  k: number,
  network: NetworkCalls,
  options: BdiaOptions,
  g: Float64Array,
): Promise<Float64Array> {
  const batch = options.batch ?? 1;
  const n = z.length / batch;
  const below = levels[k - 1] as number;
  const above = levels[k + 1] as number;
  const level = levels[k] as number;
  const shift = options.timeShift;
  const times = Array.from({ length: batch }, (_, b) =>
    shift && shift.window > 0
      ? shiftedTimestep(schedule, sampleVariance(z.subarray(b * n, (b + 1) * n)), {
          nominal: level,
          below,
          above,
          window: shift.window,
          cutoff: shift.cutoff,
        })
      : level,
  );
  const alphaBars = times.map((t) => alphaBarAt(schedule, t));
  const out = await network.call(z, times);
  const eps = toEpsilon(out, z, alphaBars, options.prediction ?? 'epsilon');
  const alphaBarBelow = alphaBarAt(schedule, below);
  const alphaBarAbove = alphaBarAt(schedule, above);
  const aBelow = Math.sqrt(alphaBarBelow);
  const sBelow = Math.sqrt(1 - alphaBarBelow);
  const aAbove = Math.sqrt(alphaBarAbove);
  const sAbove = Math.sqrt(1 - alphaBarAbove);
  const gamma = options.gamma;
  for (let b = 0; b < batch; b++) {
    const alphaBar = alphaBars[b] as number;
    const aFrom = Math.sqrt(alphaBar);
    const sFrom = Math.sqrt(1 - alphaBar);
    for (let i = b * n, end = (b + 1) * n; i < end; i++) {
      const e = eps[i] as number;
      const x0 = ((z[i] as number) - sFrom * e) / aFrom;
      g[i] = checkedLattice(
        aBelow * x0 + sBelow * e - gamma * (aAbove * x0 + sAbove * e),
        `the coupling term at level ${level}`,
      );
    }
  }
  return g;
}

/**
 * z_{k−1} = R(γ·z_{k+1}) + R(G_k(z_k)) for k = from … 1 (lattice states, exact sums); returns
 * z_0. Three state buffers rotate (the caller hands over `above` and `current`, lattice values
 * it owns, which this overwrites), so a step allocates nothing beyond the network's output.
 */
async function descend(
  schedule: NoiseSchedule,
  above: Float64Array,
  current: Float64Array,
  levels: readonly number[],
  from: number,
  network: NetworkCalls,
  options: BdiaOptions,
): Promise<Float64Array> {
  let zAbove: Float64Array = above;
  let z: Float64Array = current;
  let spare: Float64Array = new Float64Array(z.length);
  const g = new Float64Array(z.length);
  const gamma = options.gamma;
  for (let k = from; k >= 1; k--) {
    await coupling(schedule, z, levels, k, network, options, g);
    const what = `the state at level ${levels[k - 1]}`;
    for (let i = 0; i < z.length; i++)
      spare[i] = checkedLattice(onLattice(gamma * (zAbove[i] as number)) + (g[i] as number), what);
    if (options.blend) applyBlend(options.blend, k - 1, spare, what);
    options.onState?.(k - 1, spare);
    [zAbove, z, spare] = [z, spare, zAbove];
  }
  return z;
}

function checkInputs(
  schedule: NoiseSchedule,
  levels: readonly number[],
  z: Float64Array,
  options: BdiaOptions,
): void {
  checkLevels(schedule, levels);
  rowLength(z, options.batch ?? 1);
}

/**
 * Text-to-image from pure noise `z` at λ_M: one plain DDIM step to λ_{M−1} (there is no z_{M+1}
 * yet), then BDIA for k = M−1 … 1. Returns z_0; NFE = M.
 */
export async function sampleBdia(
  schedule: NoiseSchedule,
  z: Float64Array,
  levels: readonly number[],
  eps: NoiseEstimator,
  options: BdiaOptions,
): Promise<LoopResult> {
  checkInputs(schedule, levels, z, options);
  checkGamma(options.gamma, 0);
  const batch = options.batch ?? 1;
  const top = levels.length - 1;
  const network = new NetworkCalls(eps, top, options);
  const level = levels[top] as number;
  const alphaBar = alphaBarAt(schedule, level);
  const out = await network.call(z, sameTimestep(level, batch));
  const e = toEpsilon(
    out,
    z,
    new Array<number>(batch).fill(alphaBar),
    options.prediction ?? 'epsilon',
  );
  const next = ddimMap(z, e, alphaBar, alphaBarAt(schedule, levels[top - 1] as number));
  const sample = await descend(
    schedule,
    toLattice(Float64Array.from(z), 'the initial noise'),
    toLattice(next, `the state at level ${levels[top - 1]}`),
    levels,
    top - 1,
    network,
    options,
  );
  return { sample, nfe: network.count };
}

/**
 * Exact inversion of a clean latent `x` at λ_0 = λ_1 (start pair (x, x), x rounded to the
 * lattice; the network call at λ_0 would be pointless): z_{k+1} = the lattice point with
 * R(γ·z_{k+1}) = z_{k−1} − R(G_k(z_k)), for k = 1 … M−1. Returns the pair to store,
 * (z_M, z_{M−1}), and the rounded x a replay gives back bit for bit; NFE = M − 1. γ below
 * {@link MIN_INVERSION_GAMMA} is refused unless `allowLowGamma` is set.
 */
export async function invertBdia(
  schedule: NoiseSchedule,
  x: Float64Array,
  levels: readonly number[],
  eps: NoiseEstimator,
  options: BdiaInversionOptions,
): Promise<BdiaInversionResult> {
  checkInputs(schedule, levels, x, options);
  checkGamma(options.gamma, Number.MIN_VALUE);
  if (options.gamma < MIN_INVERSION_GAMMA) {
    const message = `gamma ${options.gamma} is below ${MIN_INVERSION_GAMMA}: inversion errors grow like (1/gamma)^${levels.length - 1}`;
    if (!options.allowLowGamma) {
      throw new RetraceError(
        'BAD_INPUT',
        `${message}; use gamma ≥ ${MIN_INVERSION_GAMMA} (0.94 advised)`,
      );
    }
    (options.onWarning ?? ((m: string) => process.emitWarning(m)))(message);
  }
  const top = levels.length - 1;
  const network = new NetworkCalls(eps, top - 1, options);
  const source = toLattice(Float64Array.from(x), 'the source latent');
  let zBelow: Float64Array = Float64Array.from(source);
  let z: Float64Array = Float64Array.from(source);
  let spare: Float64Array = new Float64Array(x.length);
  const g = new Float64Array(x.length);
  const gamma = options.gamma;
  options.onState?.(0, source);
  options.onState?.(1, source);
  for (let k = 1; k < top; k++) {
    await coupling(schedule, z, levels, k, network, options, g);
    const what = `the state at level ${levels[k + 1]}`;
    for (let i = 0; i < z.length; i++)
      spare[i] = latticePreimage((zBelow[i] as number) - (g[i] as number), gamma, what);
    options.onState?.(k + 1, spare);
    [zBelow, z, spare] = [z, spare, zBelow];
  }
  return { top: z, next: zBelow, source, nfe: network.count };
}

/**
 * Sampling from a stored pair (z_M, z_{M−1}): k = M−1 … 1, no bootstrap step, the first network
 * call at λ_{M−1}. With the inversion's levels, γ, network and conditioning it returns the
 * inverted (lattice) latent bit for bit; with another prompt it is the edit. NFE = M − 1.
 */
export async function replayBdia(
  schedule: NoiseSchedule,
  pair: BdiaPair,
  levels: readonly number[],
  eps: NoiseEstimator,
  options: BdiaOptions,
): Promise<LoopResult> {
  checkInputs(schedule, levels, pair.top, options);
  if (pair.next.length !== pair.top.length) {
    throw new RetraceError('BAD_INPUT', 'replay: the stored pair has states of different sizes');
  }
  checkGamma(options.gamma, Number.MIN_VALUE);
  const top = levels.length - 1;
  const network = new NetworkCalls(eps, top - 1, options);
  const sample = await descend(
    schedule,
    toLattice(Float64Array.from(pair.top), 'the stored z_M'),
    toLattice(Float64Array.from(pair.next), 'the stored z_M−1'),
    levels,
    top - 1,
    network,
    options,
  );
  return { sample, nfe: network.count };
}
