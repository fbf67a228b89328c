import { describe, expect, it } from 'vitest';
import { GaussianField } from '../../../electron/engine/runtime/rng.js';

describe('GaussianField', () => {
  it('is a pure function of seed, stream and index', () => {
    const a = new GaussianField(1234, 2);
    const b = new GaussianField(1234, 2);
    const values = a.sample(1000);
    expect(b.sample(1000)).toEqual(values);
    // Reading a window gives the same values as reading everything: tiles agree with the whole.
    expect(Array.from(b.fill(new Float64Array(10), 500))).toEqual(
      Array.from(values.subarray(500, 510)),
    );
    expect(a.at(999)).toBe(values[999]);
  });

  it('gives independent values for other seeds and streams', () => {
    const base = new GaussianField(7, 0).sample(4096);
    for (const other of [
      new GaussianField(8, 0),
      new GaussianField(7, 1),
      new GaussianField(7 + 2 ** 32, 0),
    ]) {
      const o = other.sample(4096);
      let dot = 0;
      for (let i = 0; i < o.length; i++) dot += (o[i] as number) * (base[i] as number);
      expect(Math.abs(dot / o.length)).toBeLessThan(0.06);
    }
  });

  it('draws standard normal values', () => {
    const x = new GaussianField(99).sample(200_000);
    let m = 0;
    for (const v of x) m += v;
    m /= x.length;
    let v2 = 0;
    let k4 = 0;
    let beyond3 = 0;
    for (const v of x) {
      v2 += (v - m) ** 2;
      k4 += (v - m) ** 4;
      if (Math.abs(v) > 3) beyond3 += 1;
    }
    const variance = v2 / (x.length - 1);
    expect(Math.abs(m)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.015);
    expect(Math.abs(k4 / x.length / variance ** 2 - 3)).toBeLessThan(0.06);
    expect(beyond3 / x.length).toBeGreaterThan(0.002);
    expect(beyond3 / x.length).toBeLessThan(0.0035);
  });

  it('fills any window, odd starts and lengths included, as `at` reads it', () => {
    const f = new GaussianField(31, 4);
    for (const [start, length] of [
      [0, 1],
      [1, 1],
      [1, 2],
      [3, 7],
      [10, 9],
      // Pair indices cross 2^32 inside this window: the high word's mix changes mid-fill.
      [2 ** 33 - 5, 10],
    ] as const) {
      const window = f.fill(new Float64Array(length), start);
      const expected = Array.from({ length }, (_, i) => f.at(start + i));
      expect(Array.from(window), `start ${start}, length ${length}`).toEqual(expected);
    }
  });

  it('makes the two values of a pair independent (r·cos θ and r·sin θ)', () => {
    const x = new GaussianField(3).sample(200_000);
    let evenOdd = 0;
    let oddNext = 0;
    let evenSq = 0;
    let oddSq = 0;
    for (let i = 0; i + 2 < x.length; i += 2) {
      const e = x[i] as number;
      const o = x[i + 1] as number;
      evenOdd += e * o;
      oddNext += o * (x[i + 2] as number);
      evenSq += e * e;
      oddSq += o * o;
    }
    const pairs = x.length / 2;
    expect(Math.abs(evenOdd / pairs)).toBeLessThan(0.012);
    expect(Math.abs(oddNext / pairs)).toBeLessThan(0.012);
    // Each half alone is standard normal, and r² = e² + o² is χ² with 2 degrees of freedom.
    expect(Math.abs(evenSq / pairs - 1)).toBeLessThan(0.02);
    expect(Math.abs(oddSq / pairs - 1)).toBeLessThan(0.02);
  });

  it('handles indices beyond 2^32 and rejects bad seeds', () => {
    const f = new GaussianField(5);
    expect(Number.isFinite(f.at(2 ** 40 + 3))).toBe(true);
    expect(f.at(2 ** 40 + 3)).not.toBe(f.at(3));
    expect(() => new GaussianField(-1)).toThrow(/seed/);
    expect(() => new GaussianField(1.5)).toThrow(/seed/);
    expect(() => new GaussianField(1, -2)).toThrow(/stream/);
    expect(() => f.at(-1)).toThrow(/index/);
    expect(() => f.fill(new Float64Array(2), 0.5)).toThrow(/start/);
  });
});
