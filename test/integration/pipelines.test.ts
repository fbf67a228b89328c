// The pipelines on real ONNX networks: the tiny Stable Diffusion that diffusers built and optimum
// exported (test/fixtures/tiny-sd). Its descriptor is written out here by hand, so this test
// does not depend on the pack importer (tested on its own); the tokenizer is a fixed-id stand-in
// because what is under test is the sampling, not the text.
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CancelledError } from '../../electron/engine/errors.js';
import type { PackManifest } from '../../electron/engine/packs/schema.js';
import { generate } from '../../electron/engine/pipelines/generate.js';
import {
  invertImage,
  replayInversion,
  roundtrip,
  type ModelImage,
} from '../../electron/engine/pipelines/invert.js';
import { DiffusionModel, type TextTokenizer } from '../../electron/engine/pipelines/model.js';
import { maxAbsDiff } from '../../electron/engine/runtime/tensors.js';

const dir = path.resolve('test/fixtures/tiny-sd');

const manifest: PackManifest = {
  format: 'retrace-pack/1',
  id: 'tiny-sd',
  name: 'tiny random SD',
  task: 'text-to-image',
  space: 'latent',
  resolution: { default: [64, 64], multipleOf: 8 },
  schedule: { kind: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012, trainSteps: 1000 },
  prediction: 'epsilon',
  timestepInput: 'int64',
  timestepIsIndex: false,
  components: {
    unet: { file: 'unet/model.onnx' },
    textEncoder: { file: 'text_encoder/model.onnx' },
    vaeEncoder: { file: 'vae_encoder/model.onnx' },
    vaeDecoder: { file: 'vae_decoder/model.onnx' },
  },
  latent: { channels: 4, downsample: 8, scale: 0.18215 },
  defaults: { steps: 10, guidance: 3 },
  licence: 'test fixture',
};

/** Distinct prompts → distinct fixed ids (BOS, a few word ids, EOS padding), 77 long. */
const tokenizer: TextTokenizer = {
  maxLength: 77,
  encode(prompt: string) {
    const ids = new Int32Array(77).fill(913);
    ids[0] = 912;
    [...prompt].slice(0, 70).forEach((ch, i) => (ids[i + 1] = (ch.charCodeAt(0) * 7) % 900));
    return ids;
  },
};

const model = new DiffusionModel(
  {
    id: 'tiny-sd',
    manifest,
    unetSha256: 'test',
    files: {
      unet: path.join(dir, 'unet/model.onnx'),
      textEncoder: path.join(dir, 'text_encoder/model.onnx'),
      vaeEncoder: path.join(dir, 'vae_encoder/model.onnx'),
      vaeDecoder: path.join(dir, 'vae_decoder/model.onnx'),
    },
    loadTokenizer: () => Promise.resolve(tokenizer),
    stepsOffset: 1,
  },
  { provider: 'cpu', threads: 1 },
);

afterAll(() => model.dispose());

/** A smooth synthetic photo in [−1, 1]. */
function photo(width = 64, height = 64): ModelImage {
  const chw = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++)
        chw[(c * height + y) * width + x] = 0.8 * Math.sin(0.11 * x + 0.07 * y + c);
  return { chw, width, height };
}

describe('pipelines on the tiny Stable Diffusion (real ONNX networks)', () => {
  it('BDIA round trip returns the source latent bit for bit with 2(M−1) network calls', async () => {
    const report = await roundtrip(model, photo(), {
      model: 'tiny-sd',
      image: 'unused',
      prompt: 'a photo of a cat',
      steps: 50,
      strength: 0.8,
    });
    console.log(
      `BDIA: latent ${report.latentMaxAbsError.toExponential(2)}, pixel ${report.pixelMaxAbsError.toExponential(2)} /255, nfe ${report.nfe}`,
    );
    expect(report.levels).toHaveLength(41);
    expect(report.levels[0]).toBe(-19);
    expect(report.levels.at(-1)).toBe(781);
    expect(report.nfe).toBe(2 * 39);
    // One network call per step: 39 steps each way (the pairs at both ends span one level each).
    expect(report.steps).toBe(39);
    expect(report.nfe).toBe(2 * report.steps);
    expect(report.latentMaxAbsError).toBe(0);
    expect(report.pixelMaxAbsError).toBe(0);
  });

  it('naive DDIM inversion, the baseline, does not come back exactly', async () => {
    const report = await roundtrip(model, photo(), {
      model: 'tiny-sd',
      image: 'unused',
      prompt: 'a photo of a cat',
      steps: 50,
      strength: 0.8,
      method: 'ddim-inversion',
    });
    console.log(`naive DDIM inversion: latent ${report.latentMaxAbsError.toExponential(2)}`);
    expect(report.nfe).toBe(2 * 40);
    expect(report.latentMaxAbsError).toBeGreaterThan(1e-4);
  });

  it('replaying with another prompt edits; with the source prompt it reproduces the latent', async () => {
    const inverted = await invertImage(model, photo(), {
      model: 'tiny-sd',
      image: 'unused',
      prompt: 'a cat',
      steps: 20,
    });
    const same = await replayInversion(model, inverted.inversion, {});
    const edit = await replayInversion(model, inverted.inversion, { prompt: 'a dog' });
    expect(maxAbsDiff(same.latent, inverted.latent)).toBe(0);
    expect(maxAbsDiff(edit.latent, inverted.latent)).toBeGreaterThan(1e-3);
    expect(edit.image.width).toBe(64);
  });

  it('generate: count K from seeds S…S+K−1 is reproducible image by image', async () => {
    const base = { model: 'tiny-sd', prompt: 'a red circle', steps: 5 } as const;
    const many = await generate(model, { ...base, seed: 7, count: 3 });
    const third = await generate(model, { ...base, seed: 9, count: 1 });
    expect(many.images.map((i) => i.seed)).toEqual([7, 8, 9]);
    expect(maxAbsDiff(many.images[2]?.chw ?? [], third.images[0]?.chw ?? [1])).toBeLessThan(1e-5);
    expect(many.images[0]?.width).toBe(64);
  });

  it('generate with Time-Shift and with BDIA costs the same network calls as DDIM', async () => {
    const base = { model: 'tiny-sd', prompt: 'a red circle', steps: 8, seed: 1 } as const;
    const ddim = await generate(model, { ...base, timeShift: null });
    const ts = await generate(model, { ...base, timeShift: { window: 40, cutoff: 200 } });
    const bdia = await generate(model, { ...base, sampler: 'bdia', timeShift: null });
    expect(ts.nfe).toBe(ddim.nfe);
    expect(bdia.nfe).toBe(ddim.nfe);
    expect(ts.images[0]?.shiftedLevels).toHaveLength(8);
  });

  it('a cancelled generation stops within one network call', async () => {
    const controller = new AbortController();
    let steps = 0;
    const run = generate(
      model,
      { model: 'tiny-sd', prompt: 'x', steps: 20, seed: 1 },
      {
        signal: controller.signal,
        onProgress: (e) => {
          if (e.phase === 'sampling') {
            steps = e.step;
            if (e.step === 3) controller.abort();
          }
        },
      },
    );
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    expect(steps).toBe(3);
  });
});
