// float16 conversions at the network boundary (runtime/half.ts): exact on every one of the 65,536
// half values, round-to-nearest-even on ties, overflow to infinity, subnormals, signed zero, and
// rounded once from float64 (never twice through float32).
import { describe, expect, it } from 'vitest';
import {
  decodeHalf,
  encodeHalf,
  fromHalfBits,
  toHalfBits,
} from '../../../electron/engine/runtime/half.js';

describe('float16 conversions', () => {
  it('every half value decodes and encodes back to the same bits (NaNs to the quiet NaN)', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const v = fromHalfBits(bits);
      const e = (bits >>> 10) & 0x1f;
      const m = bits & 0x3ff;
      if (e === 31 && m !== 0) {
        expect(Number.isNaN(v)).toBe(true);
        expect(toHalfBits(v)).toBe(0x7e00);
      } else {
        expect(toHalfBits(v)).toBe(bits);
      }
    }
  });

  it('known values', () => {
    expect(toHalfBits(1)).toBe(0x3c00);
    expect(toHalfBits(-2)).toBe(0xc000);
    expect(toHalfBits(65504)).toBe(0x7bff); // the largest half
    expect(toHalfBits(2 ** -14)).toBe(0x0400); // the smallest normal
    expect(toHalfBits(2 ** -24)).toBe(0x0001); // the smallest subnormal
    expect(toHalfBits(0.1)).toBe(0x2e66);
    expect(toHalfBits(-0)).toBe(0x8000);
    expect(toHalfBits(Infinity)).toBe(0x7c00);
    expect(toHalfBits(-Infinity)).toBe(0xfc00);
    expect(fromHalfBits(0x3555)).toBe(0.333251953125);
  });

  it('ties round to even; overflow goes to infinity', () => {
    expect(toHalfBits(1 + 2 ** -11)).toBe(0x3c00); // halfway between 0x3c00 and 0x3c01: even
    expect(toHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02); // halfway between 0x3c01 and 0x3c02: even
    expect(toHalfBits(2 ** -25)).toBe(0x0000); // halfway between 0 and the smallest subnormal
    expect(toHalfBits(3 * 2 ** -25)).toBe(0x0002);
    expect(toHalfBits(65519.99)).toBe(0x7bff);
    expect(toHalfBits(65520)).toBe(0x7c00); // halfway to 65536, which is past the largest: inf
    expect(toHalfBits(1e6)).toBe(0x7c00);
    expect(toHalfBits(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up from subnormal to normal
  });

  it('rounds once from float64, not twice through float32', () => {
    // 1 + 2^-11 + 2^-30 is just above the tie, so it rounds up; through float32 it would first
    // become 1 + 2^-11 exactly (2^-30 is below float32's last place) and then round to even, down.
    const v = 1 + 2 ** -11 + 2 ** -30;
    expect(Math.fround(v)).toBe(1 + 2 ** -11);
    expect(toHalfBits(v)).toBe(0x3c01);
  });

  it('encodes and decodes arrays', () => {
    const values = [0, 1, -1.5, 0.1, 1000, -65504];
    const back = decodeHalf(encodeHalf(values), new Float64Array(values.length));
    expect(Array.from(back)).toEqual([0, 1, -1.5, 0.0999755859375, 1000, -65504]);
  });
});
