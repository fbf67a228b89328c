// Deterministic Gaussian noise, addressed by position rather than drawn from a stream.
// Every value is a pure function of (seed, stream, index): a tile of a large image draws the
// same noise as the whole image would at those pixels, a replay draws the same noise as the
// original run, and nothing depends on call order. V8's Math.log/cos/sqrt are its own fdlibm
// ports, so the values are identical across platforms.

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

/** Noise for one purpose (one seed, one stream), indexed by element position. */
export class GaussianField {
  private readonly key: number;

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
    const lo = index % TWO_POW_32;
    const hi = Math.floor(index / TWO_POW_32);
    const h = mix32(this.key ^ mix32(lo ^ mix32(hi + 0x85ebca6b)));
    const a = mix32(h ^ 0x2545f491);
    const b = mix32(h ^ 0x68e31da4);
    // 53-bit uniforms in (0, 1]; Box–Muller keeps one of its two outputs.
    const u1 = ((a >>> 5) * 67108864 + (b >>> 6) + 1) / 9007199254740992;
    const u2 = mix32(a ^ b ^ 0x1b873593) / TWO_POW_32;
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** Fills `out[i] = at(start + i)`. */
  fill(out: Float64Array, start = 0): Float64Array {
    for (let i = 0; i < out.length; i++) out[i] = this.at(start + i);
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
