// The automatic edit mask against diffusers' StableDiffusionDiffEditPipeline.generate_mask on the
// tiny Stable Diffusion fixture (issue 10, acceptance 3). scripts/fixtures/make_diffedit_mask.py
// ran diffusers with the fixture's own ONNX networks and recorded the latent it was given, the
// noise draws it made and the mask it returned; the engine is fed the same latent, draws, prompts,
// strength and threshold, and must mark the same cells (IoU ≥ 0.99; measured: printed below).
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../electron/engine/formats/safetensors.js';
import { importDiffusersFolder } from '../../electron/engine/packs/loader.js';
import { autoMask } from '../../electron/engine/pipelines/automask.js';
import { DiffusionModel } from '../../electron/engine/pipelines/model.js';

const file = await readSafetensors(
  path.resolve('test/fixtures/diffusers/tiny-sd-diffedit-mask.safetensors'),
);
const model = new DiffusionModel(
  await importDiffusersFolder(path.resolve('test/fixtures/tiny-sd')),
  {
    provider: 'cpu',
    threads: 1,
  },
);
afterAll(() => model.dispose());

const tensor = (name: string) => {
  const t = file.tensors.get(name);
  if (!t) throw new Error(`fixture has no ${name}`);
  return { data: Float64Array.from(t.data as Float32Array), shape: t.shape };
};

describe("automatic mask parity with diffusers' DiffEdit generate_mask", () => {
  it('marks the same cells given the same latent, noise draws, prompts, strength and threshold', async () => {
    const meta = file.metadata;
    const x = tensor('x');
    const noise = tensor('noise');
    const reference = tensor('mask');
    const maps = Number(meta.num_maps_per_mask);
    const n = x.data.length;
    expect(noise.data.length).toBe(maps * n);
    const result = await autoMask(
      model,
      x.data,
      x.shape,
      { source: meta.source_prompt ?? '', edit: meta.target_prompt ?? '' },
      {
        maps,
        strength: Number(meta.mask_encode_strength),
        ratio: Number(meta.mask_thresholding_ratio),
        steps: Number(meta.num_inference_steps),
        guidance: Number(meta.guidance_scale),
        seed: 0,
      },
      {},
      (j) => noise.data.subarray(j * n, (j + 1) * n),
    );
    // The same noise level: diffusers' timesteps[N − int(N·r)] on its "leading" grid.
    expect(result.level).toBe(Number(meta.timestep));
    let both = 0;
    let either = 0;
    for (let i = 0; i < result.mask.length; i++) {
      const a = result.mask[i] === 1;
      const b = reference.data[i] === 1;
      if (a && b) both += 1;
      if (a || b) either += 1;
    }
    const iou = both / either;
    console.log(
      `auto mask vs diffusers: IoU ${iou.toFixed(4)} (${both} of ${either} cells; diffusers marks ${reference.data.filter((v) => v === 1).length} of ${reference.data.length})`,
    );
    // Both halves of the decision are exercised: the reference marks some cells and not others.
    expect(either).toBeGreaterThan(0.2 * result.mask.length);
    expect(either).toBeLessThan(result.mask.length);
    expect(iou).toBeGreaterThanOrEqual(0.99);
    expect(result.nfe).toBe(maps);
  });
});
