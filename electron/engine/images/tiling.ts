// Overlapped tiling for restoring large photos in bounded memory: a tile plan that covers the
// image, raised-cosine feather weights on the edges tiles share, a blender that keeps only a
// running weighted mean (so a 24 MP photo costs one image-sized set of planes plus one weight
// plane), and noise read from one pixel-indexed field so that overlapping tiles agree.
import { RetraceError } from '../errors.js';
import { GaussianField } from '../runtime/rng.js';

export interface Tile {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface TilePlanOptions {
  /** Side of a full tile; a multiple of `multiple`. */
  tile: number;
  /** Height of a full tile when it differs from its width (`tile`); a multiple of `multiple`. */
  tileHeight?: number;
  /** Minimum number of pixels neighbouring tiles share. */
  overlap: number;
  /** Tile sizes and positions are multiples of this when the image's sides are. */
  multiple: number;
}

function requireInteger(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RetraceError('BAD_INPUT', `${name} must be an integer ≥ ${min}, got ${value}`);
  }
}

/** Start positions along one axis: a regular stride, the last start moved inward to end flush. */
function axisStarts(length: number, tile: number, stride: number): number[] {
  if (tile >= length) return [0];
  const starts: number[] = [];
  for (let p = 0; ; p += stride) {
    if (p + tile >= length) {
      starts.push(length - tile);
      return starts;
    }
    starts.push(p);
  }
}

/**
 * Tiles covering a `width` × `height` image, row by row. The stride is `tile − overlap` rounded
 * down to a multiple of `multiple` (so the real overlap may be a little larger than asked); the
 * last row and column are shifted inward rather than padded; a tile larger than the image along
 * an axis becomes the whole axis.
 */
export function planTiles(width: number, height: number, options: TilePlanOptions): Tile[] {
  const { tile, overlap, multiple } = options;
  const tileH = options.tileHeight ?? tile;
  requireInteger('image width', width, 1);
  requireInteger('image height', height, 1);
  requireInteger('multiple', multiple, 1);
  requireInteger('tile', tile, multiple);
  requireInteger('tile height', tileH, multiple);
  requireInteger('overlap', overlap, 0);
  const stride = (side: number) => {
    if (side % multiple !== 0) {
      throw new RetraceError('BAD_INPUT', `tile ${side} must be a multiple of ${multiple}`);
    }
    const s = Math.floor((side - overlap) / multiple) * multiple;
    if (s < 1) {
      throw new RetraceError(
        'BAD_INPUT',
        `overlap ${overlap} leaves no stride for tile ${side} at multiples of ${multiple}`,
      );
    }
    return s;
  };
  const strideX = stride(tile);
  const strideY = stride(tileH);
  const tileWidth = Math.min(tile, width);
  const tileHeight = Math.min(tileH, height);
  const tiles: Tile[] = [];
  for (const y of axisStarts(height, tileH, strideY)) {
    for (const x of axisStarts(width, tile, strideX)) {
      tiles.push({ x, y, width: tileWidth, height: tileHeight });
    }
  }
  return tiles;
}

/** What a restore's memory is made of, for choosing its tiles (see `chooseTiles`). */
export interface MemoryModel {
  /** The whole process may use at most this many bytes. */
  budgetBytes: number;
  /** Node, sharp, onnxruntime and the loaded network before any photo. */
  baseBytes: number;
  /** Per pixel of the photo: its decoded planes, the blender's planes, the encoded output. */
  imageBytesPerPixel: number;
  /** Per pixel of one tile: the network's activations and the sampler's tile buffers. */
  networkBytesPerPixel: number;
}

export interface TileChoice {
  tileWidth: number;
  tileHeight: number;
  overlap: number;
  tiles: number;
  /** Pixels the network computes ÷ pixels of the photo (1 for one tile). */
  computedRatio: number;
  /**
   * Why this plan: 'one tile', 'memory budget', 'smallest tile' (when even that is over the
   * budget) or 'asked' (the caller gave the tile).
   */
  reason: 'one tile' | 'memory budget' | 'smallest tile' | 'asked';
}

/** The plan of `tileWidth` × `tileHeight` tiles over a `width` × `height` image, described. */
export function describeTiles(
  width: number,
  height: number,
  tile: { width: number; height: number; overlap: number; multiple: number },
  reason: TileChoice['reason'],
): TileChoice {
  const { overlap, multiple } = tile;
  const tiles = planTiles(width, height, {
    tile: tile.width,
    tileHeight: tile.height,
    overlap,
    multiple,
  });
  const first = tiles[0] as Tile;
  return {
    tileWidth: first.width,
    tileHeight: first.height,
    overlap,
    tiles: tiles.length,
    computedRatio: (tiles.length * first.width * first.height) / (width * height),
    reason,
  };
}

/** The smallest tile side that covers `length` in `n` tiles overlapping by `overlap`. */
function sideFor(length: number, n: number, overlap: number, multiple: number): number {
  if (n === 1) return length;
  const side = Math.ceil((length - overlap) / n) + overlap;
  return Math.min(length, Math.ceil(side / multiple) * multiple);
}

/**
 * Tiles for a `width` × `height` photo (multiples of `multiple`) that keep the process inside
 * `memory.budgetBytes` and make the network compute as few pixels as possible: the whole photo
 * in one tile when it fits, otherwise the tile width and height (independently, each split evenly
 * along its axis) whose plan computes the fewest pixels among those that fit, never smaller
 * than `minTile` (the pack's training tile) and never larger than `maxTilePixels`. The choice
 * depends only on the sizes and the model, not on the machine's free memory, so every machine
 * makes the same plan and restores a photo to the same bytes.
 */
export function chooseTiles(
  width: number,
  height: number,
  options: {
    multiple: number;
    overlap: number;
    minTile: number;
    maxTilePixels: number;
    memory: MemoryModel;
  },
): TileChoice {
  const { multiple, overlap, minTile, maxTilePixels, memory } = options;
  requireInteger('image width', width, 1);
  requireInteger('image height', height, 1);
  requireInteger('min tile', minTile, multiple);
  const free = memory.budgetBytes - memory.baseBytes - memory.imageBytesPerPixel * width * height;
  const maxPixels = Math.min(maxTilePixels, Math.floor(free / memory.networkBytesPerPixel));
  const evaluate = (tw: number, th: number, reason: TileChoice['reason']): TileChoice =>
    describeTiles(width, height, { width: tw, height: th, overlap, multiple }, reason);
  if (width * height <= maxPixels) return evaluate(width, height, 'one tile');
  let best: TileChoice | undefined;
  const small = Math.min(minTile, width, height);
  for (let nx = 1; nx <= Math.ceil(width / Math.max(1, small - overlap)) + 1; nx++) {
    const tw = sideFor(width, nx, overlap, multiple);
    if (tw < Math.min(minTile, width)) break;
    // At this width, the fewest rows whose tiles fit (more rows only add overlap to compute).
    for (let ny = 1; ny <= Math.ceil(height / Math.max(1, small - overlap)) + 1; ny++) {
      const th = sideFor(height, ny, overlap, multiple);
      if (th < Math.min(minTile, height)) break;
      if (tw * th > maxPixels || tw - overlap < multiple || th - overlap < multiple) continue;
      const choice = evaluate(tw, th, 'memory budget');
      const cost = choice.computedRatio;
      if (
        !best ||
        cost < best.computedRatio - 1e-9 ||
        (Math.abs(cost - best.computedRatio) <= 1e-9 && choice.tiles < best.tiles)
      ) {
        best = choice;
      }
      break;
    }
  }
  if (best) return best;
  const side = Math.min(minTile, Math.max(width, height));
  return evaluate(Math.min(side, width), Math.min(side, height), 'smallest tile');
}

/**
 * Raised-cosine ramp values for positions 0 … overlap−1 from an edge. They never reach 0 and
 * ramp(i) + ramp(overlap−1−i) = 1, so two tiles overlapping by exactly `overlap` sum to one.
 */
function ramp(overlap: number): Float64Array {
  const out = new Float64Array(overlap);
  for (let i = 0; i < overlap; i++) out[i] = 0.5 - 0.5 * Math.cos((Math.PI * (i + 0.5)) / overlap);
  return out;
}

function axisWeights(start: number, size: number, length: number, overlap: number): Float64Array {
  const w = new Float64Array(size).fill(1);
  const r = ramp(Math.min(overlap, size));
  // Only edges inside the image have a neighbour; image borders keep full weight.
  if (start > 0) for (let i = 0; i < r.length; i++) w[i] = (w[i] as number) * (r[i] as number);
  if (start + size < length) {
    for (let i = 0; i < r.length; i++) {
      w[size - 1 - i] = (w[size - 1 - i] as number) * (r[i] as number);
    }
  }
  return w;
}

/** Per-pixel blending weight of `tile` (H·W, row-major): separable raised-cosine feathering. */
export function featherWeight(
  tile: Tile,
  overlap: number,
  imageWidth: number,
  imageHeight: number,
): Float32Array {
  requireInteger('overlap', overlap, 0);
  requireTileInside(tile, imageWidth, imageHeight);
  const wx = axisWeights(tile.x, tile.width, imageWidth, overlap);
  const wy = axisWeights(tile.y, tile.height, imageHeight, overlap);
  const out = new Float32Array(tile.width * tile.height);
  for (let y = 0; y < tile.height; y++) {
    const row = wy[y] as number;
    for (let x = 0; x < tile.width; x++) out[y * tile.width + x] = row * (wx[x] as number);
  }
  return out;
}

function requireTileInside(tile: Tile, width: number, height: number): void {
  const ok =
    Number.isInteger(tile.x) &&
    Number.isInteger(tile.y) &&
    Number.isInteger(tile.width) &&
    Number.isInteger(tile.height) &&
    tile.x >= 0 &&
    tile.y >= 0 &&
    tile.width >= 1 &&
    tile.height >= 1 &&
    tile.x + tile.width <= width &&
    tile.y + tile.height <= height;
  if (!ok) {
    throw new RetraceError(
      'BAD_INPUT',
      `tile ${tile.width}×${tile.height} at (${tile.x}, ${tile.y}) is not inside the ${width}×${height} image`,
    );
  }
}

/**
 * Blends tiles into a full image as a running weighted mean per pixel:
 * m ← m + (v − m)·w/(W + w), W ← W + w. Equal to Σwv/Σw, but a pixel whose tiles all agree
 * keeps that value exactly (no rounding of large sums), and `result()` needs no extra plane.
 */
export class TileBlender {
  private readonly mean: Float32Array;
  private readonly weight: Float32Array;

  constructor(
    readonly width: number,
    readonly height: number,
    readonly channels: number,
  ) {
    requireInteger('blender width', width, 1);
    requireInteger('blender height', height, 1);
    requireInteger('blender channels', channels, 1);
    this.mean = new Float32Array(channels * width * height);
    this.weight = new Float32Array(width * height);
  }

  /** Bytes the blender holds: `channels` + 1 Float32 planes of the full image. */
  get bytes(): number {
    return this.mean.byteLength + this.weight.byteLength;
  }

  /** Adds a tile's CHW values with per-pixel weights (pixels of weight 0 are ignored). */
  add(tile: Tile, data: Float32Array | Float64Array, weight: Float32Array): void {
    requireTileInside(tile, this.width, this.height);
    const area = tile.width * tile.height;
    if (data.length !== this.channels * area) {
      throw new RetraceError(
        'BAD_INPUT',
        `tile data has ${data.length} values, expected ${this.channels}×${tile.height}×${tile.width}`,
      );
    }
    if (weight.length !== area) {
      throw new RetraceError(
        'BAD_INPUT',
        `tile weight has ${weight.length} values, expected ${tile.height}×${tile.width}`,
      );
    }
    const plane = this.width * this.height;
    const { mean, channels } = this;
    for (let y = 0; y < tile.height; y++) {
      const row = (tile.y + y) * this.width + tile.x;
      const from = y * tile.width;
      for (let x = 0; x < tile.width; x++) {
        const w = weight[from + x] as number;
        if (!(w > 0)) continue;
        const p = row + x;
        const total = (this.weight[p] as number) + w;
        this.weight[p] = total;
        const share = w / total;
        // Walk the channels by stepping a whole plane in both the image and the tile.
        for (let c = 0, i = p, d = from + x; c < channels; c++, i += plane, d += area) {
          const m = mean[i] as number;
          mean[i] = m + ((data[d] as number) - m) * share;
        }
      }
    }
  }

  /**
   * The blended CHW image. This is the blender's own buffer (no copy, to keep memory bounded);
   * throws when some pixel received no weight, which means the tiles did not cover the image.
   */
  result(): Float32Array {
    let missing = -1;
    for (let p = 0; p < this.weight.length; p++) {
      if (!((this.weight[p] as number) > 0)) {
        missing = p;
        break;
      }
    }
    if (missing >= 0) {
      throw new RetraceError(
        'RUNTIME',
        `tiles left pixel (${missing % this.width}, ${Math.floor(missing / this.width)}) uncovered`,
      );
    }
    return this.mean;
  }
}

/** The CHW values of `tile` from a full CHW image of `width` × `height` (any channel count). */
export function cropTile(
  data: Float32Array | Float64Array,
  width: number,
  height: number,
  tile: Tile,
): Float64Array {
  requireTileInside(tile, width, height);
  const plane = width * height;
  const channels = data.length / plane;
  if (!Number.isInteger(channels) || channels < 1) {
    throw new RetraceError(
      'BAD_INPUT',
      `image data has ${data.length} values, not a whole number of ${width}×${height} planes`,
    );
  }
  const out = new Float64Array(channels * tile.width * tile.height);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < tile.height; y++) {
      const from = c * plane + (tile.y + y) * width + tile.x;
      const to = (c * tile.height + y) * tile.width;
      for (let x = 0; x < tile.width; x++) out[to + x] = data[from + x] as number;
    }
  }
  return out;
}

/**
 * Noise for `tile` read from the full image's field: entry (c, y, x) is the value at index
 * (c·H + Y)·W + X of seed `field.seed`, stream `stream`, with (Y, X) the pixel in the image.
 * Every tile covering a pixel therefore draws the same noise there.
 */
export function fieldNoise(
  field: GaussianField,
  stream: number,
  tile: Tile,
  imageWidth: number,
  imageHeight: number,
  channels = 3,
): Float64Array {
  requireTileInside(tile, imageWidth, imageHeight);
  requireInteger('channels', channels, 1);
  const source = field.stream === stream ? field : new GaussianField(field.seed, stream);
  const out = new Float64Array(channels * tile.width * tile.height);
  const plane = tile.width * tile.height;
  for (let c = 0; c < channels; c++) {
    const first = (c * imageHeight + tile.y) * imageWidth + tile.x;
    if (tile.width === imageWidth) {
      // Full-width rows are contiguous in the field: one fill per channel.
      source.fill(out.subarray(c * plane, (c + 1) * plane), first);
      continue;
    }
    for (let y = 0; y < tile.height; y++) {
      const o = c * plane + y * tile.width;
      source.fill(out.subarray(o, o + tile.width), first + y * imageWidth);
    }
  }
  return out;
}
