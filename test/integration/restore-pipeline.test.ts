// The restoration pipeline on a real (tiny, fixed) ONNX network: padding to the pack's multiple,
// tiling with feathered blending, and noise that agrees between overlapping tiles.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CancelledError } from '../../electron/engine/errors.js';
import { packManifestSchema } from '../../electron/engine/packs/schema.js';
import type { ModelImage } from '../../electron/engine/pipelines/invert.js';
import { DiffusionModel } from '../../electron/engine/pipelines/model.js';
import { restoreImage } from '../../electron/engine/pipelines/restore.js';
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
