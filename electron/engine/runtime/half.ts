// IEEE 754 binary16 ("half", float16) conversions for the network boundary. onnxruntime-node
// carries float16 tensors as raw 16-bit patterns (a Uint16Array where the platform has no
// Float16Array, as Node 20 has not); Retrace's own arithmetic stays in float32/float64, so values
// are converted once on the way in and once on the way out.

/** 2^k for the exponents a half can carry, so decoding does no pow() per element. */
const POW2 = Float64Array.from({ length: 64 }, (_, i) => 2 ** (i - 32));
const pow2 = (k: number): number => POW2[k + 32] as number;

const f64 = new Float64Array(1);
const words = new Uint32Array(f64.buffer);
/** Index of the high word of a float64 in `words` (little-endian hosts: 1). */
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

/** Rounds a non-negative number to an integer, ties to even. */
function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const frac = x - floor;
  if (frac > 0.5 || (frac === 0.5 && floor % 2 === 1)) return floor + 1;
  return floor;
}

/**
 * The binary16 bit pattern nearest to `value` (round to nearest, ties to even), rounded once
 * from the float64 (not through float32, which could round twice). Overflow gives ±Infinity,
 * NaN a quiet NaN, and the sign of zero is kept.
 */
export function toHalfBits(value: number): number {
  f64[0] = value;
  const hi = words[HI] as number;
  const sign = (hi >>> 16) & 0x8000;
  if (Number.isNaN(value)) return 0x7e00;
  const a = Math.abs(value);
  if (a === Infinity) return sign | 0x7c00;
  const exponent = ((hi >>> 20) & 0x7ff) - 1023;
  if (exponent < -14) {
    // Subnormal: multiples of 2^-24. A result of 1024 is the smallest normal, 0x0400, as is.
    return sign | roundHalfEven(a * pow2(24));
  }
  let e = exponent;
  let q = roundHalfEven(a * pow2(10 - e)); // in [1024, 2048]
  if (q === 2048) {
    q = 1024;
    e += 1;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | (q - 1024);
}

/** The number a binary16 bit pattern stands for. */
export function fromHalfBits(bits: number): number {
  const negative = (bits & 0x8000) !== 0;
  const e = (bits >>> 10) & 0x1f;
  const m = bits & 0x3ff;
  let v: number;
  if (e === 0) v = m * pow2(-24);
  else if (e === 31) v = m === 0 ? Infinity : NaN;
  else v = (1024 + m) * pow2(e - 25);
  return negative ? -v : v;
}

/** Encodes numbers as float16 bit patterns. */
export function encodeHalf(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toHalfBits(values[i] as number);
  return out;
}

/** Decodes float16 bit patterns (a Uint16Array, or a Float16Array where the platform has one). */
export function decodeHalf<T extends Float32Array | Float64Array>(
  bits: ArrayLike<number>,
  into: T,
): T {
  for (let i = 0; i < bits.length; i++) into[i] = fromHalfBits(bits[i] as number);
  return into;
}
