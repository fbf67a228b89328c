import { describe, expect, it } from 'vitest';
import { CancelledError } from '../../../electron/engine/errors.js';
import { GaussianField } from '../../../electron/engine/runtime/rng.js';
import type { NoiseEstimator } from '../../../electron/engine/schedulers/loop.js';
import {
  resfusionForward,
  resnoiseCoefficient,
  resnoiseTarget,
  restoreResfusion,
} from '../../../electron/engine/schedulers/resfusion.js';
import {
  buildSchedule,
  resfusionScheduleSpec,
} from '../../../electron/engine/schedulers/schedule.js';
import { maxAbsDiff } from '../../../electron/engine/runtime/tensors.js';

const schedule = buildSchedule(resfusionScheduleSpec(12));
const n = 3 * 8 * 8;
const clean = Float64Array.from({ length: n }, (_, i) => 0.6 * Math.sin(0.37 * i));
const degraded = Float64Array.from(clean, (v, i) => 0.4 * v - 0.3 + 0.05 * Math.cos(1.7 * i));
const noise = (stream: number) => new GaussianField(11, stream).sample(n);

/**
 * The oracle: given x_t it recovers ε from the forward process (it knows x0 and R), and returns
 * the true resnoise ε + k_t·R. With it the sampler must land on x0.
 */
function oracle(x0: Float64Array, xHat: Float64Array): NoiseEstimator {
  return (input, timesteps) => {
    const t = timesteps[0] as number;
    const ab = schedule.alphasCumprod[t] as number;
    const a = Math.sqrt(ab);
    const xt = input.subarray(0, n);
    const eps = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const x = x0[i] as number;
      const r = (xHat[i] as number) - x;
      eps[i] = ((xt[i] as number) - a * x - (1 - a) * r) / Math.sqrt(1 - ab);
    }
    return resnoiseTarget(schedule, t, eps, x0, xHat);
  };
}

describe('Resfusion (ALGORITHMS.md §3)', () => {
  it('truncates T = 12 to T′ = 5 with the published √ᾱ', () => {
    const sqrt = Array.from(schedule.alphasCumprod, (v) => Math.sqrt(v));
    expect(sqrt).toHaveLength(5);
    [0.99582, 0.91318, 0.75863, 0.55716, 0.5].forEach((v, i) => expect(sqrt[i]).toBeCloseTo(v, 5));
  });

  it('the oracle network reproduces x0 through the 5-step sampler to ~1e-12', async () => {
    const calls: number[] = [];
    const net: NoiseEstimator = (input, t, step) => {
      calls.push(t[0] as number);
      expect(input.length).toBe(2 * n);
      expect(Array.from(input.subarray(n))).toEqual(Array.from(degraded));
      expect(step).toBe(calls.length - 1);
      return oracle(clean, degraded)(input, t, step);
    };
    const r = await restoreResfusion(schedule, degraded, net, noise);
    expect(calls).toEqual([4, 3, 2, 1, 0]);
    expect(r.nfe).toBe(5);
    expect(maxAbsDiff(r.sample, clean)).toBeLessThan(1e-12);
  });

  it('the forward process at the last step starts at 0.5·x̂0 + √0.75·ε', () => {
    const eps = noise(0);
    const xt = resfusionForward(schedule, clean, degraded, 4, eps);
    for (let i = 0; i < n; i += 17) {
      expect(xt[i]).toBeCloseTo(
        0.5 * (degraded[i] as number) + Math.sqrt(0.75) * (eps[i] as number),
        12,
      );
    }
    expect(resnoiseCoefficient(schedule, 0)).toBeGreaterThan(0);
  });

  it('is a pure function of the noise streams and restores batch rows independently', async () => {
    const other = Float64Array.from(degraded, (v) => -v);
    const batchNoise = (stream: number) =>
      new Float64Array([...noise(stream), ...new GaussianField(12, stream).sample(n)]);
    const zero: NoiseEstimator = (input) => new Float64Array(input.length / 2);
    const both = await restoreResfusion(
      schedule,
      new Float64Array([...degraded, ...other]),
      zero,
      batchNoise,
      { batch: 2 },
    );
    const first = await restoreResfusion(schedule, degraded, zero, noise);
    expect(maxAbsDiff(both.sample.subarray(0, n), first.sample)).toBe(0);
  });

  it('stops within one network call when cancelled', async () => {
    const controller = new AbortController();
    let calls = 0;
    const net: NoiseEstimator = (input) => {
      calls += 1;
      if (calls === 2) controller.abort();
      return new Float64Array(input.length / 2);
    };
    await expect(
      restoreResfusion(schedule, degraded, net, noise, { signal: controller.signal }),
    ).rejects.toBeInstanceOf(CancelledError);
    expect(calls).toBe(2);
  });
});
