// Tiling: plans cover every pixel with the promised overlaps and sizes, feathering is full at image
// borders and sums to one across a regular overlap, blending reproduces what the tiles agree on,
// tile noise comes from one pixel-indexed field, and a 24 MP blend stays within its memory budget.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { RetraceError } from '../../../electron/engine/errors.js';
import { readImage } from '../../../electron/engine/images/io.js';
import {
  chooseTiles,
  cropTile,
  featherWeight,
  fieldNoise,
  planTiles,
  TileBlender,
  type MemoryModel,
  type Tile,
} from '../../../electron/engine/images/tiling.js';
import { GaussianField } from '../../../electron/engine/runtime/rng.js';

function coverage(width: number, height: number, tiles: Tile[]): Uint16Array {
  const count = new Uint16Array(width * height);
  for (const t of tiles) {
    for (let y = t.y; y < t.y + t.height; y++) {
      for (let x = t.x; x < t.x + t.width; x++) count[y * width + x]! += 1;
    }
  }
  return count;
}

function blendAll(
  width: number,
  height: number,
  tiles: Tile[],
  overlap: number,
  tileData: (t: Tile) => Float32Array | Float64Array,
  channels = 3,
): Float32Array {
  const blender = new TileBlender(width, height, channels);
  for (const t of tiles) blender.add(t, tileData(t), featherWeight(t, overlap, width, height));
  return blender.result();
}

describe('planTiles', () => {
  const cases = [
    // width, height, tile, overlap, multiple
    [640, 480, 256, 32, 8],
    [1000, 600, 256, 32, 8],
    [520, 264, 128, 16, 8],
    [97, 61, 32, 8, 1],
    [300, 40, 64, 20, 4],
  ] as const;

  it.each(cases)(
    '%i×%i, tile %i, overlap %i, multiple %i: covers every pixel',
    (w, h, tile, overlap, multiple) => {
      const tiles = planTiles(w, h, { tile, overlap, multiple });
      const count = coverage(w, h, tiles);
      expect(count.every((c) => c >= 1)).toBe(true);
      for (const t of tiles) {
        expect(t.x).toBeGreaterThanOrEqual(0);
        expect(t.y).toBeGreaterThanOrEqual(0);
        expect(t.x + t.width).toBeLessThanOrEqual(w);
        expect(t.y + t.height).toBeLessThanOrEqual(h);
        expect(t.width).toBe(Math.min(tile, w));
        expect(t.height).toBe(Math.min(tile, h));
        if (w % multiple === 0 && h % multiple === 0) {
          expect([t.x, t.y, t.width, t.height].every((v) => v % multiple === 0)).toBe(true);
        }
      }
      // Horizontal neighbours share at least `overlap` columns; the last one ends at the border.
      const xs = [...new Set(tiles.map((t) => t.x))].sort((a, b) => a - b);
      const ys = [...new Set(tiles.map((t) => t.y))].sort((a, b) => a - b);
      for (const starts of [xs, ys]) {
        for (let i = 1; i < starts.length; i++) {
          expect(
            Math.min(tile, w) - ((starts[i] as number) - (starts[i - 1] as number)),
          ).toBeGreaterThanOrEqual(overlap);
        }
      }
      expect((xs.at(-1) as number) + Math.min(tile, w)).toBe(w);
      expect((ys.at(-1) as number) + Math.min(tile, h)).toBe(h);
      expect(tiles).toHaveLength(xs.length * ys.length);
    },
  );

  it('uses one tile when the tile is larger than the image', () => {
    expect(planTiles(200, 120, { tile: 256, overlap: 32, multiple: 8 })).toEqual([
      { x: 0, y: 0, width: 200, height: 120 },
    ]);
  });

  it('shifts the last column inward instead of padding', () => {
    const xs = planTiles(600, 64, { tile: 256, overlap: 32, multiple: 8 }).map((t) => t.x);
    expect(xs).toEqual([0, 224, 344]);
  });

  it('refuses plans it cannot honour', () => {
    const bad = [
      { tile: 100, overlap: 10, multiple: 8 },
      { tile: 64, overlap: 64, multiple: 8 },
      { tile: 64, overlap: 60, multiple: 8 },
      { tile: 64, overlap: -1, multiple: 8 },
      { tile: 0, overlap: 0, multiple: 1 },
    ];
    for (const options of bad) {
      expect(() => planTiles(500, 500, options)).toThrow(RetraceError);
    }
    expect(() => planTiles(0, 10, { tile: 64, overlap: 8, multiple: 8 })).toThrow(/image width/);
  });
});

describe('chooseTiles', () => {
  const MiB = 2 ** 20;
  const memory: MemoryModel = {
    budgetBytes: 1536 * MiB,
    baseBytes: 192 * MiB,
    imageBytesPerPixel: 48,
    networkBytesPerPixel: 2048,
  };
  const options = { multiple: 8, overlap: 32, minTile: 256, maxTilePixels: 1 << 20, memory };
  const cost = (w: number, h: number, tw: number, th: number) => {
    const tiles = planTiles(w, h, { tile: tw, tileHeight: th, overlap: 32, multiple: 8 });
    return (tiles.length * tw * th) / (w * h);
  };

  it('uses one tile when the photo fits the budget', () => {
    const c = chooseTiles(640, 480, options);
    expect(c).toMatchObject({ tileWidth: 640, tileHeight: 480, tiles: 1, reason: 'one tile' });
    expect(c.computedRatio).toBe(1);
  });

  it.each([
    [1600, 1200],
    [3000, 2000],
    [6000, 4000],
    [4000, 6000],
  ])('%i×%i: stays in the budget and computes fewer pixels than square 256 tiles', (w, h) => {
    const c = chooseTiles(w, h, options);
    expect(c.reason).toBe('memory budget');
    const used =
      memory.baseBytes +
      memory.imageBytesPerPixel * w * h +
      memory.networkBytesPerPixel * c.tileWidth * c.tileHeight;
    expect(used).toBeLessThanOrEqual(memory.budgetBytes);
    expect(Math.min(c.tileWidth, c.tileHeight)).toBeGreaterThanOrEqual(256);
    expect(c.computedRatio).toBeCloseTo(cost(w, h, c.tileWidth, c.tileHeight), 12);
    expect(c.computedRatio).toBeLessThan(cost(w, h, 256, 256));
    // No allowed shape on a grid of shapes beats it by more than 1 % of the photo.
    let best = Infinity;
    for (let tw = 256; tw <= w; tw += 8) {
      for (let th = 256; th <= h; th += 8) {
        const fits =
          memory.baseBytes +
            memory.imageBytesPerPixel * w * h +
            memory.networkBytesPerPixel * tw * th <=
            memory.budgetBytes && tw * th <= options.maxTilePixels;
        if (fits && (tw + th) % 64 === 0) best = Math.min(best, cost(w, h, tw, th));
      }
    }
    console.log(`${w}×${h}: chosen ${c.computedRatio.toFixed(4)}, best sampled ${best.toFixed(4)}`);
    expect(c.computedRatio).toBeLessThanOrEqual(best + 0.01);
  });

  it('falls back to the smallest tile when the photo alone fills the budget', () => {
    const c = chooseTiles(8000, 6000, options);
    expect(c).toMatchObject({ tileWidth: 256, tileHeight: 256, reason: 'smallest tile' });
  });

  it('depends only on sizes and the memory model (the same plan on every machine)', () => {
    expect(chooseTiles(6000, 4000, options)).toEqual(chooseTiles(6000, 4000, options));
    const bigger = chooseTiles(6000, 4000, {
      ...options,
      memory: { ...memory, budgetBytes: 4096 * MiB },
    });
    expect(bigger.tileWidth * bigger.tileHeight).toBeGreaterThan(
      chooseTiles(6000, 4000, options).tileWidth * chooseTiles(6000, 4000, options).tileHeight,
    );
  });
});

describe('featherWeight', () => {
  it('keeps full weight on image borders and ramps only shared edges', () => {
    const [w, h, overlap] = [600, 64, 32];
    const tiles = planTiles(w, h, { tile: 256, overlap, multiple: 8 });
    const first = featherWeight(tiles[0] as Tile, overlap, w, h);
    // Left edge is the image border: full weight; right edge is shared: ramps towards 0, never 0.
    expect(first[0]).toBe(1);
    expect(first[63 * 256]).toBe(1);
    expect(first[255]).toBeGreaterThan(0);
    expect(first[255]).toBeLessThan(0.01);
    expect(first[256 - overlap - 1]).toBe(1);
    const middle = featherWeight(tiles[1] as Tile, overlap, w, h);
    expect(middle[0]).toBeLessThan(0.01);
    expect(middle[128]).toBe(1);
    expect(
      featherWeight({ x: 0, y: 0, width: 50, height: 40 }, 16, 50, 40).every((v) => v === 1),
    ).toBe(true);
  });

  it('sums to one across a regular overlap', () => {
    const [w, h, overlap] = [480, 32, 32];
    const tiles = planTiles(w, h, { tile: 256, overlap, multiple: 8 });
    expect(tiles.map((t) => t.x)).toEqual([0, 224]);
    const a = featherWeight(tiles[0] as Tile, overlap, w, h);
    const b = featherWeight(tiles[1] as Tile, overlap, w, h);
    for (let x = 224; x < 256; x++) {
      expect((a[x] as number) + (b[x - 224] as number)).toBeCloseTo(1, 6);
    }
  });
});

describe('TileBlender', () => {
  it('blending a constant image gives the constant exactly', () => {
    for (const [w, h, tile, overlap, multiple] of [
      [640, 480, 128, 32, 8],
      [97, 61, 32, 8, 1],
      [600, 64, 256, 48, 8],
    ] as const) {
      const tiles = planTiles(w, h, { tile, overlap, multiple });
      expect(tiles.length).toBeGreaterThan(1);
      const value = 0.7123456789;
      const out = blendAll(w, h, tiles, overlap, (t) =>
        new Float64Array(3 * t.width * t.height).fill(value),
      );
      expect(out.every((v) => v === Math.fround(value))).toBe(true);
    }
  });

  it('blending identical tiles of a real image reproduces it within 1e-6', async () => {
    // A photo-like test image: smooth shapes plus noise, through sharp's blur and PNG codec.
    const [w, h] = [301, 203];
    const raw = Buffer.alloc(w * h * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) % 256;
    await mkdir(path.resolve('test/.tmp'), { recursive: true });
    const dir = await mkdtemp(path.resolve('test/.tmp/images-tiling-'));
    try {
      const file = path.join(dir, 'photo.png');
      await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
        .blur(1.5)
        .png()
        .toFile(file);
      const image = await readImage(file);
      const tiles = planTiles(w, h, { tile: 64, overlap: 16, multiple: 1 });
      // Values off the float32 grid, as a network would produce them.
      const model = Float64Array.from(image.data, (v) => v * 0.999999937 + 1e-9);
      const out = blendAll(w, h, tiles, 16, (t) => cropTile(model, w, h, t));
      let err = 0;
      for (let i = 0; i < out.length; i++)
        err = Math.max(err, Math.abs((out[i] as number) - (model[i] as number)));
      expect(err).toBeLessThanOrEqual(1e-6);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('computes the weighted mean where tiles disagree', () => {
    const [w, h, overlap] = [100, 20, 16];
    const tiles = planTiles(w, h, { tile: 48, overlap, multiple: 4 });
    // Each tile is flat at its own index: the blend at a pixel is Σ wᵢ·i / Σ wᵢ.
    const blender = new TileBlender(w, h, 1);
    const num = new Float64Array(w * h);
    const den = new Float64Array(w * h);
    tiles.forEach((t, index) => {
      const weight = featherWeight(t, overlap, w, h);
      blender.add(t, new Float32Array(t.width * t.height).fill(index), weight);
      for (let y = 0; y < t.height; y++) {
        for (let x = 0; x < t.width; x++) {
          const p = (t.y + y) * w + t.x + x;
          num[p]! += (weight[y * t.width + x] as number) * index;
          den[p]! += weight[y * t.width + x] as number;
        }
      }
    });
    const out = blender.result();
    let err = 0;
    for (let p = 0; p < w * h; p++)
      err = Math.max(err, Math.abs((out[p] as number) - (num[p] as number) / (den[p] as number)));
    expect(err).toBeLessThan(1e-6);
    // Inside an overlap the blend lies strictly between the two tiles' values.
    expect(out[40]).toBeGreaterThan(0);
    expect(out[40]).toBeLessThan(1);
  });

  it('refuses mismatched tiles and reports uncovered pixels', () => {
    const blender = new TileBlender(10, 10, 3);
    const tile = { x: 0, y: 0, width: 5, height: 10 };
    expect(() => blender.add(tile, new Float32Array(10), new Float32Array(50))).toThrow(
      /expected 3×10×5/,
    );
    expect(() =>
      blender.add({ ...tile, x: 6 }, new Float32Array(150), new Float32Array(50)),
    ).toThrow(/not inside/);
    blender.add(tile, new Float32Array(150), new Float32Array(50).fill(1));
    expect(() => blender.result()).toThrow(/pixel \(5, 0\) uncovered/);
  });

  it('blends a 24-megapixel image within its memory budget', () => {
    const [w, h, tile, overlap] = [6000, 4000, 512, 32];
    const plane = w * h * Float32Array.BYTES_PER_ELEMENT;
    const before = process.memoryUsage().arrayBuffers;
    const blender = new TileBlender(w, h, 3);
    // The blender holds exactly a 3-channel running mean and one weight plane.
    expect(blender.bytes).toBe(4 * plane);
    const tiles = planTiles(w, h, { tile, overlap, multiple: 8 });
    expect(tiles.length).toBe(13 * 9);
    // Tile values come from a formula (no full-size source image): every tile agrees at a pixel.
    const f = (c: number, x: number, y: number) => ((x * 7 + y * 13 + c * 101) % 1000) / 1000;
    const buffer = new Float32Array(3 * tile * tile);
    let peak = 0;
    for (const t of tiles) {
      const data = buffer.subarray(0, 3 * t.width * t.height);
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < t.height; y++) {
          for (let x = 0; x < t.width; x++)
            data[(c * t.height + y) * t.width + x] = f(c, t.x + x, t.y + y);
        }
      }
      blender.add(t, data, featherWeight(t, overlap, w, h));
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    }
    const out = blender.result();
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    // Budget: the blender itself plus tile-sized scratch, and never two full 3-channel images.
    expect(peak).toBeLessThan(blender.bytes + 256 * 2 ** 20);
    expect(peak).toBeLessThan(2 * 3 * plane);
    let wrong = 0;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          if (out[(c * h + y) * w + x] !== Math.fround(f(c, x, y))) wrong++;
        }
      }
    }
    expect(wrong).toBe(0);
  });
});

describe('cropTile', () => {
  it('copies a tile of any channel count into a Float64Array', () => {
    const [w, h] = [7, 5];
    const data = Float32Array.from({ length: 2 * w * h }, (_, i) => i);
    const tile = { x: 2, y: 1, width: 3, height: 2 };
    const out = cropTile(data, w, h, tile);
    expect(out).toBeInstanceOf(Float64Array);
    expect(Array.from(out)).toEqual([9, 10, 11, 16, 17, 18, 44, 45, 46, 51, 52, 53]);
    expect(() => cropTile(data, w, h, { ...tile, y: 4 })).toThrow(/not inside the 7×5 image/);
    expect(() => cropTile(data.subarray(1), w, h, tile)).toThrow(/whole number/);
  });
});

describe('fieldNoise', () => {
  const [w, h] = [90, 70];
  const field = new GaussianField(1234, 3);

  it('reads the full image field at (c·H + Y)·W + X', () => {
    const tile = { x: 10, y: 20, width: 8, height: 6 };
    const noise = fieldNoise(field, 3, tile, w, h);
    expect(noise).toHaveLength(3 * 6 * 8);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 6; y++) {
        for (let x = 0; x < 8; x++) {
          expect(noise[(c * 6 + y) * 8 + x]).toBe(field.at((c * h + 20 + y) * w + 10 + x));
        }
      }
    }
    // Another stream is another field of the same seed.
    const other = fieldNoise(field, 4, tile, w, h, 1);
    expect(other[0]).toBe(new GaussianField(1234, 4).at(20 * w + 10));
    expect(other[0]).not.toBe(noise[0]);
  });

  it('gives overlapping tiles the same noise on the overlap', () => {
    const tiles = planTiles(w, h, { tile: 40, overlap: 12, multiple: 4 });
    const [a, b] = [tiles[0] as Tile, tiles[1] as Tile];
    expect(b.x).toBeLessThan(a.x + a.width);
    const na = fieldNoise(field, 3, a, w, h);
    const nb = fieldNoise(field, 3, b, w, h);
    let compared = 0;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < a.height; y++) {
        for (let X = b.x; X < a.x + a.width; X++) {
          expect(na[(c * a.height + y) * a.width + X - a.x]).toBe(
            nb[(c * b.height + y) * b.width + X - b.x],
          );
          compared++;
        }
      }
    }
    expect(compared).toBe(3 * a.height * (a.x + a.width - b.x));
  });
});
