// Tensor helpers at the network boundary: engine states are Float64Array, networks see float32.
export type Shape = readonly number[];

export function elementCount(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Casts float64 state to the float32 a network is fed. */
export function toFloat32(data: Float64Array): Float32Array {
  return Float32Array.from(data);
}

/** Widens a network output to float64 state. */
export function toFloat64(data: Float32Array | Float64Array): Float64Array {
  return data instanceof Float64Array ? data : Float64Array.from(data);
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (d > m || Number.isNaN(d)) m = d;
  }
  return m;
}

/** Stacks equally sized rows into one batch buffer. */
export function concatRows<T extends Float32Array | Float64Array>(rows: readonly T[]): T {
  const first = rows[0];
  if (!first) throw new RangeError('concatRows needs at least one row');
  const out = new (first.constructor as new (n: number) => T)(first.length * rows.length);
  rows.forEach((r, i) => {
    if (r.length !== first.length) throw new RangeError('concatRows: rows differ in length');
    out.set(r, i * first.length);
  });
  return out;
}

/** Splits a batch buffer into `count` equal rows (views, not copies). */
export function splitRows<T extends Float32Array | Float64Array>(batch: T, count: number): T[] {
  if (batch.length % count !== 0)
    throw new RangeError(`cannot split ${batch.length} values into ${count} rows`);
  const n = batch.length / count;
  return Array.from({ length: count }, (_, i) => batch.subarray(i * n, (i + 1) * n) as T);
}
