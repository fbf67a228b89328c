import { describe, expect, it } from 'vitest';
import { CancelledError, RetraceError } from '../../../electron/engine/errors.js';
import {
  invertBdia,
  QUANTUM,
  replayBdia,
  sampleBdia,
} from '../../../electron/engine/schedulers/bdia.js';
import { sampleDdim } from '../../../electron/engine/schedulers/ddim.js';
import type { NoiseEstimator } from '../../../electron/engine/schedulers/loop.js';
import {
  alphaBarAt,
  buildSchedule,
  editLevels,
  samplingLevels,
} from '../../../electron/engine/schedulers/schedule.js';
import { maxAbsDiff } from '../../../electron/engine/runtime/tensors.js';

const sd = buildSchedule({
  kind: 'scaled_linear',
  betaStart: 0.00085,
  betaEnd: 0.012,
  trainSteps: 1000,
});
const { levels } = editLevels(1000, 50, 0.8);
const d = 16;
const x = Float64Array.from({ length: d }, (_, j) => 0.5 * Math.cos(0.7 * j));

/** ALGORITHMS.md §1's model-free ε: smooth, nonlinear, coupled across entries, level-dependent. */
const toyEps: NoiseEstimator = (z, timesteps) => {
  const n = z.length / timesteps.length;
  const out = new Float64Array(z.length);
  timesteps.forEach((level, b) => {
    for (let j = 0; j < n; j++) {
      const zj = z[b * n + j] as number;
      const next = z[b * n + ((j + 1) % n)] as number;
      out[b * n + j] = Math.sin(1.3 * zj + 0.001 * level + 0.1 * j) + 0.5 * Math.tanh(next);
    }
  });
  return out;
};

const sum = (a: Float64Array) => a.reduce((s, v) => s + v, 0);

describe('BDIA model-free check (ALGORITHMS.md §1)', () => {
  for (const [gamma, expected] of [
    [1, 12.2873110692],
    [0.94, 6.50884646034],
  ] as const) {
    it(`γ = ${gamma}: sum(z_40) = ${expected}; the round trip returns the lattice x bit for bit`, async () => {
      const inverted = await invertBdia(sd, x, levels, toyEps, { gamma });
      console.log(`γ = ${gamma}: sum(z_40) = ${sum(inverted.top).toPrecision(15)}`);
      expect(Math.abs(sum(inverted.top) / expected - 1)).toBeLessThan(1e-9);
      // The start state is x rounded to the lattice: at most half a lattice step away.
      expect(maxAbsDiff(inverted.source, x)).toBeLessThanOrEqual(QUANTUM / 2);
      const back = await replayBdia(sd, inverted, levels, toyEps, { gamma });
      const err = maxAbsDiff(back.sample, inverted.source);
      console.log(`γ = ${gamma}: round trip max |error| = ${err}`);
      expect(err).toBe(0);
      expect(inverted.nfe).toBe(39);
      expect(back.nfe).toBe(39);
    });
  }

  it('inverts and replays batch rows independently', async () => {
    const y = Float64Array.from(x, (v) => -0.3 * v + 0.1);
    const both = new Float64Array([...x, ...y]);
    const inverted = await invertBdia(sd, both, levels, toyEps, { gamma: 0.94, batch: 2 });
    const alone = await invertBdia(sd, y, levels, toyEps, { gamma: 0.94 });
    expect(maxAbsDiff(inverted.top.subarray(d), alone.top)).toBe(0);
    const back = await replayBdia(sd, inverted, levels, toyEps, { gamma: 0.94, batch: 2 });
    expect(maxAbsDiff(back.sample, inverted.source)).toBe(0);
  });

  it('stays exact with a Time-Shift inside G_k (a deterministic function of z_k)', async () => {
    const timesteps: number[] = [];
    const recording: NoiseEstimator = (z, t, i) => {
      timesteps.push(...t);
      return toyEps(z, t, i);
    };
    const options = { gamma: 0.94, timeShift: { window: 10, cutoff: 100 } };
    const inverted = await invertBdia(sd, x, levels, recording, options);
    const back = await replayBdia(sd, inverted, levels, recording, options);
    expect(maxAbsDiff(back.sample, inverted.source)).toBe(0);
    // The shift was really used, and never below the cutoff.
    const nominal = [...levels.slice(1, -1), ...levels.slice(1, -1).reverse()];
    expect(timesteps.some((t, i) => t !== nominal[i])).toBe(true);
    timesteps.forEach((t, i) => {
      if ((nominal[i] as number) <= 100) expect(t).toBe(nominal[i]);
    });
  });
});

describe('BDIA sampling from noise', () => {
  it('starts with one plain DDIM step, then one network call per step (NFE = steps)', async () => {
    const grid = samplingLevels(1000, 10);
    const noise = Float64Array.from({ length: d }, (_, j) => Math.sin(3.1 * j + 0.2));
    const seen: number[] = [];
    const result = await sampleBdia(
      sd,
      noise,
      grid,
      (z, t, i) => {
        seen.push(t[0] as number);
        return toyEps(z, t, i);
      },
      { gamma: 0.5 },
    );
    expect(result.nfe).toBe(10);
    expect(seen).toEqual([900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    // γ = 0 is DDIM, up to BDIA's lattice: each of the 10 steps rounds to within QUANTUM/2,
    // and a DDIM step carries a change of its input to x̂0 with a gain of at most 1/a(λ)
    // (largest at the top, 900); ×4 covers the toy ε's Lipschitz constant (1.3 + 0.5 < 2) twice.
    const bdia0 = await sampleBdia(sd, noise, grid, toyEps, { gamma: 0 });
    const ddim = await sampleDdim(sd, noise, grid, toyEps);
    const bound = (grid.length * QUANTUM * 4) / Math.sqrt(alphaBarAt(sd, 900));
    expect(maxAbsDiff(bdia0.sample, ddim.sample)).toBeLessThan(bound);
  });
});

describe('BDIA guards', () => {
  it('refuses γ below 0.85 for inversion, naming gamma', async () => {
    const attempt = invertBdia(sd, x, levels, toyEps, { gamma: 0.5 });
    await expect(attempt).rejects.toBeInstanceOf(RetraceError);
    await expect(invertBdia(sd, x, levels, toyEps, { gamma: 0.5 })).rejects.toMatchObject({
      code: 'BAD_INPUT',
      message: expect.stringMatching(/gamma/),
    });
    await expect(invertBdia(sd, x, levels, toyEps, { gamma: 0 })).rejects.toThrow(/gamma/);
  });

  it('inverts with a low γ when allowLowGamma is passed, and warns', async () => {
    const warnings: string[] = [];
    const short = levels.slice(0, 12);
    const result = await invertBdia(sd, x, short, toyEps, {
      gamma: 0.7,
      allowLowGamma: true,
      onWarning: (m) => warnings.push(m),
    });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/gamma 0.7/);
    // On the lattice a low γ is still exact, as long as the states stay in range.
    const back = await replayBdia(sd, result, short, toyEps, { gamma: 0.7 });
    expect(maxAbsDiff(back.sample, result.source)).toBe(0);
  });

  it('says so when a low γ makes the states leave the exact range, naming gamma', async () => {
    // γ = 0.5 over 40 levels: the states grow like 2^39, as ALGORITHMS.md warns.
    const warnings: string[] = [];
    const attempt = invertBdia(sd, x, levels, toyEps, {
      gamma: 0.5,
      allowLowGamma: true,
      onWarning: (m) => warnings.push(m),
    });
    await expect(attempt).rejects.toThrow(/outside the exact range.*gamma/);
    expect(warnings).toHaveLength(1);
  });

  it('refuses a network that returns non-finite values instead of storing them', async () => {
    const broken: NoiseEstimator = (z) => z.map(() => Number.NaN);
    await expect(invertBdia(sd, x, levels, broken, { gamma: 0.94 })).rejects.toThrow(
      /coupling term.*non-finite/,
    );
  });

  it('checks the signal before every network call', async () => {
    const controller = new AbortController();
    let calls = 0;
    const attempt = invertBdia(
      sd,
      x,
      levels,
      (z, t, i) => {
        if (++calls === 3) controller.abort();
        return toyEps(z, t, i);
      },
      { gamma: 0.94, signal: controller.signal },
    );
    await expect(attempt).rejects.toBeInstanceOf(CancelledError);
    expect(calls).toBe(3);
  });

  it('reports progress after each network call', async () => {
    const steps: string[] = [];
    await invertBdia(sd, x, levels.slice(0, 4), toyEps, {
      gamma: 1,
      onStep: (done, total) => steps.push(`${done}/${total}`),
    });
    expect(steps).toEqual(['1/2', '2/2']);
  });
});

describe('masked BDIA replay (ALGORITHMS.md §5)', () => {
  // Two "channels" of 8 positions each; the mask keeps positions 0–3 and edits 4–7.
  const plane = 8;
  const weights = Float64Array.from({ length: plane }, (_, j) => (j < 4 ? 0 : j === 4 ? 0.5 : 1));
  /** A different prompt, for the toy: the same ε shifted by a constant. */
  const editEps: NoiseEstimator = (z, timesteps, step) => {
    const out = toyEps(z, timesteps, step) as Float64Array;
    return out.map((v) => v + 0.3);
  };

  async function trajectory(gamma: number) {
    const states = new Map<number, Float64Array>();
    const inverted = await invertBdia(sd, x, levels, toyEps, {
      gamma,
      onState: (k, z) => states.set(k, Float64Array.from(z)),
    });
    return { inverted, states };
  }

  it('records every state of the inversion: z_0 = z_1 = x, …, z_M and z_{M−1} the stored pair', async () => {
    const { inverted, states } = await trajectory(0.94);
    const top = levels.length - 1;
    expect([...states.keys()].sort((a, b) => a - b)).toEqual([...Array(top + 1).keys()]);
    expect(states.get(0)).toEqual(inverted.source);
    expect(states.get(1)).toEqual(inverted.source);
    expect(states.get(top)).toEqual(inverted.top);
    expect(states.get(top - 1)).toEqual(inverted.next);
  });

  it('where the mask is 0 every state is the source trajectory’s, bit for bit; elsewhere the edit moves it', async () => {
    const { inverted, states } = await trajectory(0.94);
    const seen = new Map<number, Float64Array>();
    const edited = await replayBdia(sd, inverted, levels, editEps, {
      gamma: 0.94,
      blend: { weights, state: (k) => states.get(k) as Float64Array },
      onState: (k, z) => seen.set(k, Float64Array.from(z)),
    });
    for (const [k, z] of seen) {
      const source = states.get(k) as Float64Array;
      for (let i = 0; i < d; i++) {
        if ((weights[i % plane] as number) === 0)
          expect(z[i], `state ${k}, entry ${i}`).toBe(source[i]);
      }
    }
    for (let i = 0; i < d; i++) {
      const m = weights[i % plane] as number;
      if (m === 0) expect(edited.sample[i]).toBe(inverted.source[i]);
      else
        expect(
          Math.abs((edited.sample[i] as number) - (inverted.source[i] as number)),
        ).toBeGreaterThan(1e-3);
    }
    // The plain edit (no mask) moves the kept positions too: the mask is what keeps them.
    const plain = await replayBdia(sd, inverted, levels, editEps, { gamma: 0.94 });
    expect(maxAbsDiff(plain.sample.subarray(0, 4), inverted.source.subarray(0, 4))).toBeGreaterThan(
      1e-3,
    );
  });

  it('a masked edit is itself exact: replaying it twice gives the same bits', async () => {
    const { inverted, states } = await trajectory(1);
    const options = {
      gamma: 1,
      blend: { weights, state: (k: number) => states.get(k) as Float64Array },
    };
    const a = await replayBdia(sd, inverted, levels, editEps, options);
    const b = await replayBdia(sd, inverted, levels, editEps, options);
    expect(maxAbsDiff(a.sample, b.sample)).toBe(0);
    // With the source prompt, the masked replay is the plain round trip: x exactly.
    const back = await replayBdia(sd, inverted, levels, toyEps, options);
    expect(maxAbsDiff(back.sample, inverted.source)).toBe(0);
  });

  it('refuses a mask that does not fit the states', async () => {
    const { inverted, states } = await trajectory(1);
    await expect(
      replayBdia(sd, inverted, levels, editEps, {
        gamma: 1,
        blend: { weights: new Float64Array(5), state: (k) => states.get(k) as Float64Array },
      }),
    ).rejects.toThrow(/a mask of 5 positions .* do not fit states of 16/);
  });
});
