import { describe, expect, it } from 'vitest';
import { GaussianField } from '../../../electron/engine/runtime/rng.js';
import { invertBdia, replayBdia } from '../../../electron/engine/schedulers/bdia.js';
import { sampleDdim } from '../../../electron/engine/schedulers/ddim.js';
import type { NoiseEstimator } from '../../../electron/engine/schedulers/loop.js';
import {
  buildSchedule,
  editLevels,
  samplingLevels,
} from '../../../electron/engine/schedulers/schedule.js';
import {
  sampleTimeShift,
  sampleVariance,
  shiftedTimestep,
} from '../../../electron/engine/schedulers/time-shift.js';
import { maxAbsDiff } from '../../../electron/engine/runtime/tensors.js';

const linear = buildSchedule({ kind: 'linear', betaStart: 1e-4, betaEnd: 0.02, trainSteps: 1000 });
const steps = 10;
const levels = samplingLevels(1000, steps);
const d = 3 * 32 * 32;
/** Standard deviation of the toy data x ~ N(0, s²·I). */
const s = 0.5;

/** The exact noise predictor of Gaussian data, optionally under-predicting by `scale`. */
function gaussianEps(scale: number): NoiseEstimator {
  return (z, t) => {
    const n = z.length / t.length;
    return z.map((v, i) => {
      const ab = linear.alphasCumprod[t[Math.floor(i / n)] as number] as number;
      return (scale * Math.sqrt(1 - ab) * v) / (ab * s * s + 1 - ab);
    });
  };
}

/** B rows of noise with exactly the marginal variance of the top level. */
function startNoise(batch: number, grid: readonly number[] = levels): Float64Array {
  const z = new GaussianField(3).sample(d * batch);
  const abT = linear.alphasCumprod[grid.at(-1) as number] as number;
  const target = abT * s * s + 1 - abT;
  for (let b = 0; b < batch; b++) {
    const row = z.subarray(b * d, (b + 1) * d);
    const mean = row.reduce((a, v) => a + v, 0) / d;
    const sd = Math.sqrt(sampleVariance(row));
    for (let i = 0; i < d; i++) row[i] = (((row[i] as number) - mean) / sd) * Math.sqrt(target);
  }
  return z;
}

const excess = (sample: Float64Array, batch: number) => {
  let total = 0;
  for (let b = 0; b < batch; b++) total += sampleVariance(sample.subarray(b * d, (b + 1) * d));
  return total / batch - s * s;
};

describe('Time-Shift sampler (ALGORITHMS.md §2)', () => {
  it('window 0 reproduces plain DDIM bit for bit', async () => {
    const z = startNoise(2);
    const eps = gaussianEps(0.97);
    const plain = await sampleDdim(linear, z, levels, eps, { batch: 2 });
    for (const variant of ['paper', 'released-code', 'data-variance'] as const) {
      const shifted = await sampleTimeShift(linear, z, levels, eps, {
        window: 0,
        cutoff: 0,
        variant,
        batch: 2,
      });
      expect(Buffer.from(shifted.sample.buffer).equals(Buffer.from(plain.sample.buffer))).toBe(
        true,
      );
      expect(shifted.nfe).toBe(plain.nfe);
    }
  });

  it('under-predicted noise (×0.97): TS shifts up more than with the exact denoiser and removes the leftover noise, at no extra NFE', async () => {
    // 20 steps: at 10 the DDIM discretisation error of this toy outweighs the 3 % bias.
    const grid = samplingLevels(1000, 20);
    const meanShift = (r: { shiftedLevels: number[][] }) => {
      const shifts = r.shiftedLevels
        .slice(0, -1)
        .flatMap((row, i) => row.map((tau) => tau - (grid[19 - i] as number)));
      return shifts.reduce((a, v) => a + v, 0) / shifts.length;
    };
    const z = startNoise(4, grid);
    const options = { window: 40, cutoff: 200, batch: 4 };
    const exact = await sampleTimeShift(linear, z, grid, gaussianEps(1), options);
    const eps = gaussianEps(0.97);
    const plain = await sampleDdim(linear, z, grid, eps, { batch: 4 });
    const ts = await sampleTimeShift(linear, z, grid, eps, options);
    const before = excess(plain.sample, 4);
    const after = excess(ts.sample, 4);
    console.log(
      `mean shift: exact denoiser ${meanShift(exact).toFixed(1)}, ×0.97 ${meanShift(ts).toFixed(1)}; ` +
        `leftover variance DDIM ${before.toExponential(2)} → Time-Shift ${after.toExponential(2)}`,
    );
    expect(meanShift(ts)).toBeGreaterThan(meanShift(exact));
    expect(meanShift(ts)).toBeGreaterThan(0);
    expect(before).toBeGreaterThan(0);
    expect(Math.abs(after)).toBeLessThan(0.1 * before);
    expect(ts.nfe).toBe(plain.nfe);
  });

  it('never shifts the first step nor at or below the cutoff', async () => {
    const r = await sampleTimeShift(linear, startNoise(1), levels, gaussianEps(0.9), {
      window: 80,
      cutoff: 500,
    });
    // shiftedLevels[i] is where the output of step i is taken to be; its nominal is levels[M−1−i].
    r.shiftedLevels.forEach((row, i) => {
      const nominal = levels[steps - 1 - i] as number;
      if (nominal <= 500) expect(row[0]).toBe(nominal);
    });
    expect(r.shiftedLevels.some((row, i) => row[0] !== levels[steps - 1 - i])).toBe(true);
  });

  it('chooses τ strictly between the neighbouring grid levels, ties to the smallest', () => {
    const candidates = { nominal: 500, below: 400, above: 600, window: 1000, cutoff: 0 };
    expect(shiftedTimestep(linear, 10, candidates)).toBe(599);
    expect(shiftedTimestep(linear, -1, candidates)).toBe(401);
    const exact = 1 - (linear.alphasCumprod[450] as number);
    expect(shiftedTimestep(linear, exact, candidates)).toBe(450);
    expect(shiftedTimestep(linear, exact, { ...candidates, cutoff: 500 })).toBe(500);
  });

  it('released-code and data-variance variants are distinct, deterministic samplers', async () => {
    const z = startNoise(1);
    const eps = gaussianEps(0.97);
    const run = (variant: 'paper' | 'released-code' | 'data-variance') =>
      sampleTimeShift(linear, z, levels, eps, { window: 40, cutoff: 200, variant });
    const [paper, released, data] = await Promise.all([
      run('paper'),
      run('released-code'),
      run('data-variance'),
    ]);
    expect(maxAbsDiff(paper.sample, released.sample)).toBeGreaterThan(0);
    expect(maxAbsDiff(paper.sample, data.sample)).toBeGreaterThan(0);
    expect(maxAbsDiff((await run('data-variance')).sample, data.sample)).toBe(0);
  });

  it('a Time-Shift inside BDIA keeps the inversion exact', async () => {
    const sd = buildSchedule({
      kind: 'scaled_linear',
      betaStart: 0.00085,
      betaEnd: 0.012,
      trainSteps: 1000,
    });
    const edit = editLevels(1000, 50, 0.8).levels;
    const x = Float64Array.from({ length: 64 }, (_, j) => 0.5 * Math.cos(0.7 * j));
    const eps: NoiseEstimator = (z) => z.map((v, j) => Math.sin(1.3 * v + 0.1 * j));
    const options = { gamma: 0.94, timeShift: { window: 20, cutoff: 100 } };
    const inverted = await invertBdia(sd, x, edit, eps, options);
    const back = await replayBdia(sd, inverted, edit, eps, options);
    expect(maxAbsDiff(back.sample, inverted.source)).toBe(0);
  });
});
