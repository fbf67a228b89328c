import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CancelledError } from '../../../electron/engine/errors.js';
import {
  combineGuidance,
  ddimMap,
  ddimStep,
  sampleDdim,
  vToEpsilon,
} from '../../../electron/engine/schedulers/ddim.js';
import { invertDdimNaive } from '../../../electron/engine/schedulers/ddim-inversion.js';
import type { NoiseEstimator } from '../../../electron/engine/schedulers/loop.js';
import {
  buildSchedule,
  samplingLevels,
  type NoiseSchedule,
} from '../../../electron/engine/schedulers/schedule.js';
import { maxAbsDiff } from '../../../electron/engine/runtime/tensors.js';

interface GoldenLoop {
  scheduler: 'DDIMScheduler' | 'DDIMInverseScheduler';
  config: {
    beta_start: number;
    beta_end: number;
    beta_schedule: 'linear' | 'scaled_linear';
    num_train_timesteps: number;
    steps_offset: number;
    prediction_type?: 'epsilon' | 'v_prediction';
  };
  steps: number;
  timesteps: number[];
  /** diffusers as shipped (float32 tables and state). */
  sum: number;
  abs_sum: number;
  abs_mean: number;
  /** The same diffusers code with float64 tables and state. */
  sum_f64: number;
  abs_sum_f64: number;
}

const golden = JSON.parse(
  readFileSync(new URL('../../fixtures/diffusers/dummy-loops.json', import.meta.url), 'utf8'),
) as Record<string, GoldenLoop>;

/** diffusers' tests/schedulers dummy_sample_deter: arange(768) laid out (C, H, W, B)/768, as [4, 3, 8, 8]. */
function dummySampleDeter(): Float64Array {
  const [B, C, H, W] = [4, 3, 8, 8];
  const count = B * C * H * W;
  const out = new Float64Array(count);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++)
          out[((b * C + c) * H + h) * W + w] = (((c * H + h) * W + w) * B + b) / count;
  return out;
}

/** diffusers' dummy "network": sample·t/(t + 1), one t per row. */
const dummyModel: NoiseEstimator = (z, timesteps) => {
  const n = z.length / timesteps.length;
  return z.map((v, i) => {
    const t = timesteps[Math.floor(i / n)] as number;
    return (v * t) / (t + 1);
  });
};

const sd = buildSchedule({
  kind: 'scaled_linear',
  betaStart: 0.00085,
  betaEnd: 0.012,
  trainSteps: 1000,
});

describe('DDIM golden loops (dummy network, sums computed by diffusers 0.25.1)', () => {
  for (const [name, loop] of Object.entries(golden)) {
    it(`${name} matches diffusers' ${loop.scheduler}`, async () => {
      const c = loop.config;
      const schedule: NoiseSchedule = buildSchedule({
        kind: c.beta_schedule,
        betaStart: c.beta_start,
        betaEnd: c.beta_end,
        trainSteps: c.num_train_timesteps,
      });
      const levels = samplingLevels(c.num_train_timesteps, loop.steps, c.steps_offset);
      const seen: number[] = [];
      const model: NoiseEstimator = (z, t, i) => {
        seen.push(t[0] as number);
        return dummyModel(z, t, i);
      };
      const options = { batch: 4, prediction: c.prediction_type ?? 'epsilon' } as const;
      const result =
        loop.scheduler === 'DDIMScheduler'
          ? await sampleDdim(schedule, dummySampleDeter(), levels, model, options)
          : await invertDdimNaive(schedule, dummySampleDeter(), levels, model, options);
      expect(seen).toEqual(loop.timesteps);
      const total = result.sample.reduce((s, v) => s + v, 0);
      const absSum = result.sample.reduce((s, v) => s + Math.abs(v), 0);
      console.log(
        `${name}: sum ${total.toFixed(10)} (diffusers float64 ${loop.sum_f64.toFixed(10)}, float32 ${loop.sum.toFixed(6)})`,
      );
      expect(Math.abs(total / loop.sum_f64 - 1)).toBeLessThan(1e-12);
      expect(Math.abs(absSum / loop.abs_sum_f64 - 1)).toBeLessThan(1e-12);
      // Shipped diffusers keeps ᾱ in float32 (off by up to 8e-7 relative): agreement to ~1e-6.
      expect(Math.abs(total / loop.sum - 1)).toBeLessThan(2e-6);
      expect(result.nfe).toBe(loop.steps);
    });
  }
});

describe('DDIM building blocks', () => {
  const z = Float64Array.from({ length: 32 }, (_, i) => Math.sin(i));
  const eps = Float64Array.from({ length: 32 }, (_, i) => Math.cos(2 * i));

  it('φ denoises and noises along the same line (φ(φ(z, ε; λ→μ), ε; μ→λ) = z)', () => {
    const a = sd.alphasCumprod[600] as number;
    const b = sd.alphasCumprod[100] as number;
    expect(maxAbsDiff(ddimMap(ddimMap(z, eps, a, b), eps, b, a), z)).toBeLessThan(1e-13);
    expect(maxAbsDiff(ddimMap(z, eps, a, a), z)).toBeLessThan(1e-15);
  });

  it('η = 1 adds σ_t·noise, σ_t from (1−ᾱ_prev)/(1−ᾱ_t)·(1−ᾱ_t/ᾱ_prev)', () => {
    const [a, b] = [sd.alphasCumprod[500] as number, sd.alphasCumprod[480] as number];
    const noise = Float64Array.from(z, (v) => v * 0.7 - 0.1);
    const std = Math.sqrt(((1 - b) / (1 - a)) * (1 - a / b));
    const stepped = ddimStep(z, eps, a, b, 1, noise);
    const x0 = Float64Array.from(
      z,
      (v, i) => (v - Math.sqrt(1 - a) * (eps[i] as number)) / Math.sqrt(a),
    );
    expect(maxAbsDiff(stepped.predOriginal, x0)).toBe(0);
    const expected = x0.map(
      (v, i) =>
        Math.sqrt(b) * v +
        Math.sqrt(1 - b - std * std) * (eps[i] as number) +
        std * (noise[i] as number),
    );
    expect(maxAbsDiff(stepped.prevSample, expected)).toBeLessThan(1e-15);
    expect(() => ddimStep(z, eps, a, b, 1)).toThrow(/noise/);
  });

  it('converts v-prediction: x̂0 = a·z − σ·v', () => {
    const alphaBar = sd.alphasCumprod[300] as number;
    const v = eps;
    const e = vToEpsilon(v, z, alphaBar);
    const { predOriginal } = ddimStep(z, e, alphaBar, alphaBar);
    const expected = z.map(
      (zi, i) => Math.sqrt(alphaBar) * zi - Math.sqrt(1 - alphaBar) * (v[i] as number),
    );
    expect(maxAbsDiff(predOriginal, expected)).toBeLessThan(1e-14);
  });

  it('combines guidance ε_u + g·(ε_c − ε_u) from one batch of 2B rows', () => {
    const both = new Float64Array([1, 2, 3, 4, 5, 7, 3, 0]);
    expect(Array.from(combineGuidance(both, 3))).toEqual([13, 17, 3, -8]);
    expect(Array.from(combineGuidance(both, 1))).toEqual([5, 7, 3, 0]);
  });

  it('stops before the next network call once the signal is aborted', async () => {
    const controller = new AbortController();
    const loop = sampleDdim(
      sd,
      z,
      samplingLevels(1000, 5),
      (x, t) => {
        controller.abort();
        return dummyModel(x, t, 0);
      },
      { signal: controller.signal },
    );
    await expect(loop).rejects.toBeInstanceOf(CancelledError);
  });
});
