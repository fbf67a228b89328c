// Importing the tiny Stable Diffusion that diffusers built and optimum exported
// (test/fixtures/tiny-sd): the descriptor must carry its scheduler, latent and tokenizer settings,
// the tokenizer must give transformers' ids, and the text encoder must accept what it gives.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOnnxInputs } from '../../electron/engine/formats/onnx.js';
import { sha256File } from '../../electron/engine/packs/hash.js';
import { importDiffusersFolder, PackRegistry } from '../../electron/engine/packs/loader.js';
import { NetworkSession } from '../../electron/engine/runtime/session.js';

const TINY_SD = path.resolve('test/fixtures/tiny-sd');

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'retrace-sd-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A copy of the fixture to break, for the error cases. */
async function copyOfTinySd(name: string): Promise<string> {
  const dir = path.join(root, name);
  await cp(TINY_SD, dir, { recursive: true });
  return dir;
}

describe('Stable Diffusion folder import', () => {
  it('describes the tiny SD: schedule, prediction, steps offset, latent, resolution, files', async () => {
    const pack = await importDiffusersFolder(TINY_SD);
    const m = pack.manifest;
    expect(pack.id).toBe('tiny-sd');
    expect(pack.origin).toBe('imported');
    expect(m.task).toBe('text-to-image');
    expect(m.space).toBe('latent');
    expect(m.schedule).toEqual({
      kind: 'scaled_linear',
      betaStart: 0.00085,
      betaEnd: 0.012,
      trainSteps: 1000,
    });
    expect(m.prediction).toBe('epsilon');
    expect(pack.stepsOffset).toBe(1);
    // 4 VAE blocks → 3 downsamplings → 8; unet sample_size 8 → 64 pixels; the unet's 2 blocks
    // halve the latent once, so pixel sizes must be multiples of 8 × 2.
    expect(m.latent).toEqual({ channels: 4, downsample: 8, scale: 0.18215 });
    expect(m.resolution).toEqual({ default: [64, 64], multipleOf: 16 });
    expect(m.timestepInput).toBe('int64');
    expect(m.defaults).toMatchObject({ steps: 50, guidance: 7.5, gamma: 0.94, strength: 0.8 });
    expect(pack.files).toEqual({
      unet: path.join(TINY_SD, 'unet/model.onnx'),
      textEncoder: path.join(TINY_SD, 'text_encoder/model.onnx'),
      vaeEncoder: path.join(TINY_SD, 'vae_encoder/model.onnx'),
      vaeDecoder: path.join(TINY_SD, 'vae_decoder/model.onnx'),
    });
    expect(pack.unetSha256).toBe(await sha256File(path.join(TINY_SD, 'unet/model.onnx')));
    expect((await importDiffusersFolder(TINY_SD, { id: 'my-sd' })).id).toBe('my-sd');
  });

  it("reads the unet's input types from the graph as onnxruntime sees them", async () => {
    for (const part of ['unet', 'text_encoder', 'vae_encoder', 'vae_decoder']) {
      const file = path.join(TINY_SD, part, 'model.onnx');
      const session = await NetworkSession.open(file, { provider: 'cpu', threads: 1 });
      try {
        expect(await readOnnxInputs(file)).toEqual(
          session.inputs.map((i) => ({ name: i.name, type: i.type })),
        );
      } finally {
        await session.dispose();
      }
    }
  });

  it("its tokenizer gives transformers' ids, and the text encoder takes them", async () => {
    const pack = await importDiffusersFolder(TINY_SD);
    const tok = await pack.loadTokenizer?.();
    if (!tok) throw new Error('no tokenizer');
    const vectors = JSON.parse(
      await readFile(path.resolve('test/fixtures/tokenizers/clip-tiny.json'), 'utf8'),
    ) as { cases: { prompt: string; ids: number[] }[] };
    for (const c of vectors.cases.slice(0, 10)) expect([...tok.encode(c.prompt)]).toEqual(c.ids);
    const session = await NetworkSession.open(pack.files.textEncoder as string, {
      provider: 'cpu',
      threads: 1,
    });
    try {
      const ids = tok.encode('a photo of a cat');
      const out = await session.run(
        { input_ids: { data: ids, dims: [1, ids.length] } },
        'last_hidden_state',
      );
      expect(out.dims).toEqual([1, 77, 32]);
      expect(out.data.every((v) => Number.isFinite(v))).toBe(true);
    } finally {
      await session.dispose();
    }
  });

  it('a registry imports it once, lists it next time, and forgets it on remove', async () => {
    const userDir = path.join(root, 'user');
    const registry = new PackRegistry({ bundledDirs: [], userDir });
    const pack = await registry.importFolder(TINY_SD, { id: 'tiny' });
    expect(pack.origin).toBe('imported');
    const recorded = JSON.parse(await readFile(path.join(userDir, 'imports.json'), 'utf8'));
    expect(recorded.imports).toMatchObject([{ id: 'tiny', dir: TINY_SD }]);
    const again = new PackRegistry({ bundledDirs: [], userDir });
    expect(await again.list()).toMatchObject([
      { id: 'tiny', origin: 'imported', ok: true, task: 'text-to-image', dir: TINY_SD },
    ]);
    expect((await again.get('tiny')).stepsOffset).toBe(1);
    // By path too, without recording anything.
    expect((await again.get(TINY_SD)).id).toBe('tiny-sd');
    await again.remove('tiny');
    expect(await again.list()).toEqual([]);
  });

  it('names what is missing or unsupported', async () => {
    const noIndex = await copyOfTinySd('no-index');
    await rm(path.join(noIndex, 'model_index.json'));
    await expect(importDiffusersFolder(noIndex)).rejects.toThrow(
      `${noIndex}: not a diffusers folder (no model_index.json`,
    );

    const noVae = await copyOfTinySd('no-vae');
    await rm(path.join(noVae, 'vae_decoder', 'model.onnx'));
    await expect(importDiffusersFolder(noVae)).rejects.toThrow(
      `${path.join(noVae, 'vae_decoder', 'model.onnx')}: missing`,
    );

    const noTok = await copyOfTinySd('no-tokenizer');
    await rm(path.join(noTok, 'tokenizer', 'merges.txt'));
    await expect(importDiffusersFolder(noTok)).rejects.toThrow(
      `${path.join(noTok, 'tokenizer')}: missing tokenizer`,
    );

    const noSched = await copyOfTinySd('no-scheduler');
    await rm(path.join(noSched, 'scheduler'), { recursive: true });
    await expect(importDiffusersFolder(noSched)).rejects.toThrow(
      `${path.join(noSched, 'scheduler', 'scheduler_config.json')}: missing scheduler config`,
    );

    const cosine = await copyOfTinySd('cosine');
    const schedFile = path.join(cosine, 'scheduler', 'scheduler_config.json');
    const sched = JSON.parse(await readFile(schedFile, 'utf8'));
    await writeFile(schedFile, JSON.stringify({ ...sched, beta_schedule: 'squaredcos_cap_v2' }));
    await expect(importDiffusersFolder(cosine)).rejects.toThrow(
      'beta_schedule "squaredcos_cap_v2" is not supported',
    );
    await writeFile(schedFile, JSON.stringify({ ...sched, prediction_type: 'sample' }));
    await expect(importDiffusersFolder(cosine)).rejects.toThrow(
      'prediction_type "sample" is not supported',
    );

    const notOnnx = await copyOfTinySd('not-onnx');
    await writeFile(path.join(notOnnx, 'unet', 'model.onnx'), 'this is not a network');
    await expect(importDiffusersFolder(notOnnx)).rejects.toThrow(
      `${path.join(notOnnx, 'unet', 'model.onnx')}: not a readable ONNX model`,
    );

    await expect(importDiffusersFolder(TINY_SD, { id: 'Bad Id' })).rejects.toThrow(
      'pack id "Bad Id": must be folder-safe',
    );
  });
});
