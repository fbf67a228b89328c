// The restoration pipeline on a real (tiny, fixed) ONNX network: padding to the pack's multiple,
// tiling with feathered blending, and noise that agrees between overlapping tiles.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CancelledError } from '../../electron/engine/errors.js';
import { packManifestSchema } from '../../electron/engine/packs/schema.js';
import type { ModelImage } from '../../electron/engine/pipelines/invert.js';
import { DiffusionModel } from '../../electron/engine/pipelines/model.js';
import { planTiles } from '../../electron/engine/images/tiling.js';
import { restoreImage } from '../../electron/engine/pipelines/restore.js';
import { GaussianField } from '../../electron/engine/runtime/rng.js';
import { maxAbsDiff } from '../../electron/engine/runtime/tensors.js';

const dir = path.resolve('test/fixtures/restore-pack');
const manifest = packManifestSchema.parse(
  JSON.parse(await readFile(path.join(dir, 'pack.json'), 'utf8')),
);
const model = new DiffusionModel(
  { id: manifest.id, manifest, unetSha256: 'test', files: { unet: path.join(dir, 'unet.onnx') } },
  { provider: 'cpu', threads: 1 },
);
afterAll(() => model.dispose());

function photo(width: number, height: number): ModelImage {
  const chw = new Float32Array(3 * width * height);
  for (let i = 0; i < chw.length; i++) chw[i] = 0.7 * Math.sin(0.05 * i);
  return { chw, width, height };
}

describe('restoreImage', () => {
  it('keeps the size of an image that is not a multiple of 8, in 5 network calls', async () => {
    const r = await restoreImage(model, photo(37, 21), { seed: 1 });
    expect([r.image.width, r.image.height]).toEqual([37, 21]);
    expect(r.image.chw).toHaveLength(3 * 37 * 21);
    expect(r.nfe).toBe(5);
    expect(Math.max(...r.image.chw)).toBeLessThanOrEqual(1);
    expect(Math.min(...r.image.chw)).toBeGreaterThanOrEqual(-1);
  });

  it('is deterministic per seed, and seeds differ', async () => {
    const a = await restoreImage(model, photo(40, 24), { seed: 5 });
    const b = await restoreImage(model, photo(40, 24), { seed: 5 });
    const c = await restoreImage(model, photo(40, 24), { seed: 6 });
    expect(maxAbsDiff(a.image.chw, b.image.chw)).toBe(0);
    expect(maxAbsDiff(a.image.chw, c.image.chw)).toBeGreaterThan(0.01);
  });

  it('tiled and whole restorations agree: one noise field, feathered seams', async () => {
    const image = photo(150, 100);
    const whole = await restoreImage(model, image, { seed: 3, tile: 256 });
    const tiled = await restoreImage(model, image, { seed: 3, tile: 64, overlap: 16 });
    expect(whole.tiles).toBe(1);
    expect(tiled.tiles).toBeGreaterThan(4);
    expect(tiled.nfe).toBe(5 * tiled.tiles);
    let sum = 0;
    for (let i = 0; i < image.chw.length; i++) {
      sum += Math.abs((whole.image.chw[i] as number) - (tiled.image.chw[i] as number));
    }
    const mean = sum / image.chw.length;
    console.log(
      `tiled vs whole: mean |diff| ${mean.toExponential(2)}, max ${maxAbsDiff(whole.image.chw, tiled.image.chw).toExponential(2)}`,
    );
    expect(mean).toBeLessThan(2e-3);
  });

  it('deterministic leaves out the noise between steps (a different result, still 5 calls)', async () => {
    const a = await restoreImage(model, photo(40, 24), { seed: 5, deterministic: true });
    const b = await restoreImage(model, photo(40, 24), { seed: 5 });
    expect(maxAbsDiff(a.image.chw, b.image.chw)).toBeGreaterThan(0.01);
    expect(a.nfe).toBe(5);
  });

  it('refuses a text-to-image request shape: wrong step count, bad tile', async () => {
    await expect(restoreImage(model, photo(16, 16), { seed: 1, steps: 7 })).rejects.toThrow(
      /exactly 5 steps/,
    );
    await expect(restoreImage(model, photo(16, 16), { seed: 1, tile: 60 })).rejects.toThrow(
      /multiple of 8/,
    );
  });

  it('stops within one network call when cancelled', async () => {
    const controller = new AbortController();
    let calls = 0;
    const run = restoreImage(
      model,
      photo(150, 100),
      { seed: 1, tile: 64, overlap: 16 },
      {
        signal: controller.signal,
        onProgress: (e) => {
          calls = e.step;
          if (e.step === 7) controller.abort();
        },
      },
    );
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    expect(calls).toBe(7);
  });
});

// The shipped denoise network on a noisy synthetic photo: the memory-budget tile plan and seams.
describe('restoreImage with restore-denoise', () => {
  const realDir = path.resolve('models/packs/restore-denoise');
  const realManifest = packManifestSchema.parse(
    JSON.parse(readFileSync(path.join(realDir, 'pack.json'), 'utf8')),
  );
  const real = new DiffusionModel(
    {
      id: realManifest.id,
      manifest: realManifest,
      unetSha256: 'test',
      files: { unet: path.join(realDir, 'unet.onnx') },
    },
    { provider: 'cpu', threads: 1 },
  );
  afterAll(() => real.dispose());

  /** A smooth scene with texture and seeded Gaussian noise of σ = 15/255 (in [−1, 1]: ×2). */
  function noisyPhoto(width: number, height: number): ModelImage {
    const chw = new Float32Array(3 * width * height);
    const noise = new GaussianField(99);
    const n = new Float64Array(chw.length);
    noise.fill(n, 0);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const i = (c * height + y) * width + x;
          const clean =
            -0.6 + (1.2 * x) / width + 0.2 * Math.sin(0.07 * y + c) * Math.cos(0.05 * x);
          chw[i] = clean + (2 * 15 * (n[i] as number)) / 255;
        }
      }
    }
    return { chw, width, height };
  }

  /** Largest |difference| between horizontal neighbours (x−1, x) over the columns `xs`. */
  function maxStep(image: ModelImage, xs: Iterable<number>): number {
    let max = 0;
    for (const x of xs) {
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < image.height; y++) {
          const i = (c * image.height + y) * image.width + x;
          max = Math.max(max, Math.abs((image.chw[i] as number) - (image.chw[i - 1] as number)));
        }
      }
    }
    return max;
  }

  it('restores a photo that fits in one tile exactly as untiled', async () => {
    const image = noisyPhoto(200, 136);
    const planned = await restoreImage(real, image, { seed: 4 });
    expect(planned.plan).toMatchObject({ tiles: 1, reason: 'one tile' });
    const untiled = await restoreImage(real, image, { seed: 4, tile: 256 });
    expect(untiled.tiles).toBe(1);
    expect(maxAbsDiff(planned.image.chw, untiled.image.chw)).toBe(0);
    // Tiling it does change the result (so the comparison above could fail).
    const tiled = await restoreImage(real, image, { seed: 4, tile: 128, overlap: 32 });
    expect(tiled.tiles).toBeGreaterThan(1);
    expect(maxAbsDiff(planned.image.chw, tiled.image.chw)).toBeGreaterThan(0);
  });

  it('leaves no seams: steps across tile borders are no larger than inside tiles', async () => {
    const image = noisyPhoto(512, 128);
    const overlap = 32;
    const r = await restoreImage(real, image, { seed: 4, tile: 256, overlap });
    const tiles = planTiles(512, 128, { tile: 256, overlap, multiple: 8 });
    expect(tiles.length).toBe(3);
    // Borders: the first and last column of every tile that meets a neighbour.
    const borders = new Set<number>();
    for (const t of tiles) {
      if (t.x > 0) borders.add(t.x);
      if (t.x + t.width < 512) borders.add(t.x + t.width);
    }
    // Inside: steps between two pixels that one tile alone covers, `overlap` or more from that
    // tile's edges (and so from the photo's edges, where the network's zero padding shows).
    const inside: number[] = [];
    for (let x = 1; x < 512; x++) {
      const owners = tiles.filter((t) => x - 1 >= t.x && x < t.x + t.width);
      const only = owners.length === 1 ? owners[0] : undefined;
      if (only && x - 1 - only.x >= overlap && only.x + only.width - 1 - x >= overlap) {
        inside.push(x);
      }
    }
    expect(inside.length).toBeGreaterThan(100);
    const across = maxStep(r.image, borders);
    const within = maxStep(r.image, inside);
    console.log(
      `restore-denoise seams: max step across borders ${across.toFixed(4)}, inside ${within.toFixed(4)}`,
    );
    expect(across).toBeLessThanOrEqual(within);
    // The measure sees a seam: the same output with the tiles from the second on lifted by
    // twice the largest step inside fails it.
    const lifted = Float32Array.from(r.image.chw);
    const edge = tiles[1]?.x as number;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 128; y++) {
        for (let x = edge; x < 512; x++) lifted[(c * 128 + y) * 512 + x]! += 2 * within;
      }
    }
    const seamed = { ...r.image, chw: lifted };
    expect(maxStep(seamed, borders)).toBeGreaterThan(maxStep(seamed, inside));
  });
});
