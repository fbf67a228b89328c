// Deterministic Gaussian noise, addressed by position rather than drawn from a stream.
// Every value is a pure function of (seed, stream, index): a tile of a large image draws the
// same noise as the whole image would at those pixels, a replay draws the same noise as the
// original run, and nothing depends on call order. V8's Math.log/cos/sin/sqrt are its own
// fdlibm ports, so the values are identical across platforms.
//
// Values come in pairs: indices 2p and 2p + 1 are the two outputs of one Box–Muller transform
// of the uniforms hashed from p (r·cos θ and r·sin θ, independent standard normals). Using both
// halves the hashing and the logarithms per value; `fill` walks pairs and is what the hot paths
// (initial latents, Resfusion's per-step noise) call.

/** A 32-bit integer mixer with low bias (Wellons' "lowbias32"). */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

const TWO_POW_32 = 4294967296;
const TWO_PI = 2 * Math.PI;

/** Noise for one purpose (one seed, one stream), indexed by element position. */
export class GaussianField {
  private readonly key: number;
  // Scratch for one pair, so `at` allocates nothing.
  private readonly pair = new Float64Array(2);

  /**
   * @param seed any integer in [0, 2^53); different seeds give independent fields.
   * @param stream distinguishes independent uses of one seed (e.g. sampler step numbers).
   */
  constructor(
    readonly seed: number,
    readonly stream = 0,
  ) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new RangeError(`seed must be a non-negative integer below 2^53, got ${seed}`);
    }
    if (!Number.isSafeInteger(stream) || stream < 0) {
      throw new RangeError(`stream must be a non-negative integer, got ${stream}`);
    }
    const seedLo = seed % TWO_POW_32;
    const seedHi = Math.floor(seed / TWO_POW_32);
    this.key = mix32(mix32(mix32(seedLo ^ 0x9e3779b9) ^ seedHi) ^ mix32(stream + 0x632be5ab));
  }

  /** The standard normal value at `index` (a non-negative safe integer). */
  at(index: number): number {
    if (!Number.isSafeInteger(index) || index < 0) {
      throw new RangeError(`index must be a non-negative safe integer, got ${index}`);
    }
    this.fill(this.pair, index - (index % 2));
    return this.pair[index % 2] as number;
  }

  /** Fills `out[i] = at(start + i)`. */
  fill(out: Float64Array, start = 0): Float64Array {
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new RangeError(`start must be a non-negative safe integer, got ${start}`);
    }
    const end = start + out.length;
    let i = start;
    while (i < end) {
      // Pairs [p0, p1) share the high 32 bits of the pair index, so its mix is computed once.
      const p = Math.floor(i / 2);
      const hi = Math.floor(p / TWO_POW_32);
      const hiKey = mix32(hi + 0x85ebca6b);
      const lastPair = Math.min(Math.floor((end - 1) / 2), (hi + 1) * TWO_POW_32 - 1);
      const key = this.key;
      const hiBase = hi * TWO_POW_32;
      for (let q = p; q <= lastPair; q++) {
        const h = mix32(key ^ mix32((q - hiBase) ^ hiKey));
        const a = mix32(h ^ 0x2545f491);
        const b = mix32(h ^ 0x68e31da4);
        // u1: 53-bit uniform in (0, 1]; u2: 32-bit uniform in [0, 1).
        const u1 = ((a >>> 5) * 67108864 + (b >>> 6) + 1) / 9007199254740992;
        const u2 = mix32(a ^ b ^ 0x1b873593) / TWO_POW_32;
        const r = Math.sqrt(-2 * Math.log(u1));
        const theta = TWO_PI * u2;
        const even = 2 * q;
        if (even >= start) out[even - start] = r * Math.cos(theta);
        if (even + 1 < end) out[even + 1 - start] = r * Math.sin(theta);
      }
      i = 2 * lastPair + 2;
    }
    return out;
  }

  /** A fresh array of `count` values starting at index 0. */
  sample(count: number): Float64Array {
    return this.fill(new Float64Array(count));
  }
}

/** Draws a random seed for a user who did not give one (shown to them so the run can be repeated). */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}
