import { describe, expect, it } from 'vitest';
import { RetraceError } from '../../../electron/engine/errors.js';
import {
  alphaBarAt,
  buildSchedule,
  editLevels,
  resfusionScheduleSpec,
  samplingLevels,
  timestepGrid,
} from '../../../electron/engine/schedulers/schedule.js';

const sd = buildSchedule({
  kind: 'scaled_linear',
  betaStart: 0.00085,
  betaEnd: 0.012,
  trainSteps: 1000,
});

describe('buildSchedule', () => {
  it('builds Stable Diffusion scaled_linear with the documented check values', () => {
    expect(sd.alphasCumprod.length).toBe(1000);
    expect(sd.alphasCumprod[0]).toBeCloseTo(0.99915, 15);
    expect(sd.alphasCumprod[20]).toBeCloseTo(0.9813143622, 10);
    expect(sd.alphasCumprod[780]).toBeCloseTo(0.0438269723, 10);
    expect(sd.betas[999]).toBeCloseTo(0.012, 15);
  });

  it('builds linear betas from betaStart to betaEnd', () => {
    const s = buildSchedule({ kind: 'linear', betaStart: 1e-4, betaEnd: 0.02, trainSteps: 1000 });
    expect(s.betas[0]).toBe(1e-4);
    expect(s.betas[999]).toBe(0.02);
    expect(s.alphas[500]).toBeCloseTo(1 - (1e-4 + (500 * (0.02 - 1e-4)) / 999), 15);
  });

  it('truncates the Resfusion schedule where √ᾱ reaches 0.5 (T = 12 → T′ = 5)', () => {
    const s = buildSchedule(resfusionScheduleSpec(12));
    const sqrtAlphaBar = Array.from(s.alphasCumprod, Math.sqrt);
    expect(sqrtAlphaBar).toHaveLength(5);
    [0.99582, 0.91318, 0.75863, 0.55716, 0.5].forEach((v, i) =>
      expect(sqrtAlphaBar[i]).toBeCloseTo(v, 5),
    );
    expect(s.alphasCumprod[4]).toBe(0.25);
    // α and β of the pinned step are consistent with ᾱ: ᾱ_4 = ᾱ_3·α_4, β_4 = 1 − α_4.
    expect((s.alphasCumprod[3] as number) * (s.alphas[4] as number)).toBeCloseTo(0.25, 15);
    expect((s.betas[4] as number) + (s.alphas[4] as number)).toBe(1);
    expect(s.betas[0]).toBeCloseTo(0.1 / 12, 15);
  });
});

describe('alphaBarAt', () => {
  it('maps every negative level to ᾱ_0 (the final alpha) and refuses levels past the table', () => {
    expect(alphaBarAt(sd, -20)).toBe(sd.alphasCumprod[0]);
    expect(alphaBarAt(sd, -1)).toBe(sd.alphasCumprod[0]);
    expect(alphaBarAt(sd, 780)).toBe(sd.alphasCumprod[780]);
    expect(() => alphaBarAt(sd, 1000)).toThrow(RetraceError);
    expect(() => alphaBarAt(sd, 2.5)).toThrow(/not an integer/);
  });
});

describe('grids', () => {
  it('spaces timesteps "leading", as diffusers set_timesteps', () => {
    expect(timestepGrid(1000, 10)).toEqual([900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    expect(timestepGrid(1000, 50, 1).slice(0, 3)).toEqual([981, 961, 941]);
    expect(timestepGrid(1000, 3)).toEqual([666, 333, 0]);
    expect(samplingLevels(1000, 4)).toEqual([-250, 0, 250, 500, 750]);
    expect(() => timestepGrid(1000, 0)).toThrow(/steps/);
    expect(() => timestepGrid(1000, 1001)).toThrow(/steps/);
  });

  it('keeps floor(N·s) levels for an edit: SD preset N = 50, s = 0.8 → [−20, 0, …, 780], M = 40', () => {
    const { levels, kept } = editLevels(1000, 50, 0.8);
    expect(kept).toBe(40);
    expect(levels).toHaveLength(41);
    expect(levels.slice(0, 3)).toEqual([-20, 0, 20]);
    expect(levels.at(-1)).toBe(780);
    expect(editLevels(1000, 50, 0.8, 1).levels.slice(0, 2)).toEqual([-19, 1]);
    // diffusers' int(N·strength): the float product decides, e.g. 100·0.29 = 28.999… → 28.
    expect(editLevels(1000, 100, 0.29).kept).toBe(28);
    expect(() => editLevels(1000, 10, 0.05)).toThrow(/keeps no step/);
    expect(() => editLevels(1000, 10, 1.5)).toThrow(/strength/);
  });
});
