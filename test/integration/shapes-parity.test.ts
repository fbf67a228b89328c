// The engine against the model factory for the Shapes packs: each committed pack's four ONNX
// networks, opened through NetworkSession, must reproduce the torch outputs stored in
// test/fixtures/parity/<id>.safetensors, its tokenizer.json the stored ids, and sampleDdim driven
// by those networks the factory's 10-step guided DDIM latent from the stored noise.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, type Tensor } from '../../electron/engine/formats/safetensors.js';
import { packManifestSchema, type PackManifest } from '../../electron/engine/packs/schema.js';
import { loadTokenizerJson } from '../../electron/engine/packs/tokenizers.js';
import { NetworkSession } from '../../electron/engine/runtime/session.js';
import { maxAbsDiff } from '../../electron/engine/runtime/tensors.js';
import { combineGuidance, sampleDdim } from '../../electron/engine/schedulers/ddim.js';
import { buildSchedule, samplingLevels } from '../../electron/engine/schedulers/schedule.js';

const PACKS = ['shapes-base', 'shapes-b2', 'shapes-ddpo'] as const;
const NETWORKS = ['textEncoder', 'unet', 'vaeEncoder', 'vaeDecoder'] as const;
type Network = (typeof NETWORKS)[number];
const GRAPH_TOLERANCE = 1e-4;
// Ten guided UNet calls in float32 on each side; the states themselves are float64 on both.
const DDIM_TOLERANCE = 1e-3;

function tensor(tensors: Map<string, Tensor>, name: string, dtype: Tensor['dtype']): Tensor {
  const t = tensors.get(name);
  if (!t || t.dtype !== dtype) throw new Error(`parity vectors: no ${dtype} tensor "${name}"`);
  return t;
}

function floats(tensors: Map<string, Tensor>, name: string): Float32Array {
  const t = tensor(tensors, name, 'F32');
  return t.data as Float32Array;
}

function packFolder(id: string): string {
  return path.resolve('models/packs', id);
}

const present = PACKS.filter((id) => existsSync(path.join(packFolder(id), 'pack.json')));
const absent = PACKS.filter((id) => !present.includes(id));

it('the Shapes base pack is committed (the tuned packs are optional)', () => {
  if (absent.length > 0)
    console.log(`shapes parity: skipping ${absent.join(', ')} (not committed)`);
  expect(present).toContain('shapes-base');
});

describe.each(present)('%s pack', (id) => {
  const dir = packFolder(id);
  let loaded: ReturnType<typeof open> | undefined;
  const load = () => (loaded ??= open());
  afterAll(async () => {
    if (loaded) await Promise.all(Object.values((await loaded).sessions).map((s) => s.dispose()));
  });

  async function open() {
    const manifest: PackManifest = packManifestSchema.parse(
      JSON.parse(await readFile(path.join(dir, 'pack.json'), 'utf8')),
    );
    const vectors = await readSafetensors(path.resolve(`test/fixtures/parity/${id}.safetensors`));
    const sessions = {} as Record<Network, NetworkSession>;
    for (const name of NETWORKS) {
      const component = manifest.components[name];
      if (!component) throw new Error(`${id}: pack.json names no ${name}`);
      sessions[name] = await NetworkSession.open(path.join(dir, component.file), {
        provider: 'cpu',
        threads: 1,
      });
    }
    return { manifest, vectors, sessions };
  }

  it('pack.json is a latent text-to-image manifest whose files match their sha256', async () => {
    const { manifest } = await load();
    expect(manifest.id).toBe(id);
    expect(manifest).toMatchObject({
      task: 'text-to-image',
      space: 'latent',
      prediction: 'epsilon',
      timestepInput: 'int64',
      latent: { channels: 4, downsample: 4 },
    });
    expect(manifest.schedule.trainSteps).toBe(1000);
    if (id !== 'shapes-base') expect(manifest.tuning?.base).toBe('shapes-base');
    for (const name of NETWORKS) {
      const component = manifest.components[name];
      const bytes = await readFile(path.join(dir, component?.file ?? ''));
      expect(component?.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    }
  });

  it('tokenizer.json gives the stored input ids, and "" is all padding', async () => {
    const { manifest, vectors } = await load();
    const spec = manifest.components.tokenizer;
    if (!spec) throw new Error(`${id}: no tokenizer`);
    const tokenizer = await loadTokenizerJson(path.join(dir, spec.file), spec.maxLength);
    const ids = tensor(vectors.tensors, 'text_encoder.input_ids', 'I32');
    const length = ids.shape[1] ?? 0;
    expect(length).toBe(spec.maxLength);
    const stored = ids.data as Int32Array;
    expect([...tokenizer.encode(vectors.metadata['ddim.prompt'] ?? '')]).toEqual([
      ...stored.subarray(0, length),
    ]);
    expect([...tokenizer.encode('')]).toEqual([...stored.subarray(length, 2 * length)]);
    expect(stored.subarray(length).every((v) => v === 0)).toBe(true);
  });

  it(`each network reproduces its torch vectors within ${GRAPH_TOLERANCE}`, async () => {
    const { vectors, sessions } = await load();
    const t = vectors.tensors;
    expect(vectors.metadata).toMatchObject({ format: 'retrace-parity/1', pack: id });
    const ids = tensor(t, 'text_encoder.input_ids', 'I32');
    const step = tensor(t, 'unet.timestep', 'I64');
    const feed = (name: string) => ({ data: floats(t, name), dims: tensor(t, name, 'F32').shape });
    const runs: [Network, Promise<{ data: Float32Array; dims: number[] }>, string][] = [
      [
        'textEncoder',
        sessions.textEncoder.run({ input_ids: { data: ids.data as Int32Array, dims: ids.shape } }),
        'text_encoder.last_hidden_state',
      ],
      [
        'unet',
        sessions.unet.run({
          sample: feed('unet.sample'),
          timestep: { data: step.data as BigInt64Array, dims: step.shape },
          encoder_hidden_states: feed('unet.encoder_hidden_states'),
        }),
        'unet.out_sample',
      ],
      [
        'vaeEncoder',
        sessions.vaeEncoder.run({ sample: feed('vae_encoder.sample') }),
        'vae_encoder.latent_sample',
      ],
      [
        'vaeDecoder',
        sessions.vaeDecoder.run({ latent_sample: feed('vae_decoder.latent_sample') }),
        'vae_decoder.sample',
      ],
    ];
    for (const [name, run, expectedName] of runs) {
      const out = await run;
      expect(out.dims, name).toEqual(tensor(t, expectedName, 'F32').shape);
      const err = maxAbsDiff(out.data, floats(t, expectedName));
      console.log(`${id}: ${name} max |diff| ${err.toExponential(2)}`);
      expect(err, name).toBeLessThanOrEqual(GRAPH_TOLERANCE);
    }
    // The vectors pin real content: a zero latent decodes far from the stored image.
    const blank = await sessions.vaeDecoder.run({
      latent_sample: {
        data: new Float32Array(floats(t, 'vae_decoder.latent_sample').length),
        dims: tensor(t, 'vae_decoder.latent_sample', 'F32').shape,
      },
    });
    expect(maxAbsDiff(blank.data, floats(t, 'vae_decoder.sample'))).toBeGreaterThan(0.1);
  });

  it(`sampleDdim on the ONNX networks reproduces the factory's 10-step latent within ${DDIM_TOLERANCE}`, async () => {
    const { manifest, vectors, sessions } = await load();
    const t = vectors.tensors;
    const steps = Number(vectors.metadata['ddim.steps']);
    const guidance = Number(vectors.metadata['ddim.guidance']);
    expect(steps).toBe(10);
    expect(guidance).toBe(manifest.defaults.guidance);
    const ids = tensor(t, 'text_encoder.input_ids', 'I32');
    const length = ids.shape[1] ?? 0;
    const text = await sessions.textEncoder.run({
      input_ids: { data: ids.data as Int32Array, dims: ids.shape },
    });
    const [, seq, width] = text.dims as [number, number, number];
    const row = seq * width;
    // Unconditional rows first, then conditional: the order combineGuidance expects.
    const context = new Float32Array(2 * row);
    context.set(text.data.subarray(row, 2 * row), 0);
    context.set(text.data.subarray(0, row), row);
    expect(length).toBe(seq);
    const noise = tensor(t, 'ddim.noise', 'F32');
    const [, c, h, w] = noise.shape as [number, number, number, number];
    const calls: number[][] = [];
    const network = async (z: Float64Array, timesteps: number[]) => {
      calls.push(timesteps);
      const both = new Float32Array(2 * z.length);
      both.set(z, 0);
      both.set(z, z.length);
      const out = await sessions.unet.run({
        sample: { data: both, dims: [2, c, h, w] },
        timestep: { data: [timesteps[0] ?? 0, timesteps[0] ?? 0], dims: [2] },
        encoder_hidden_states: { data: context, dims: [2, seq, width] },
      });
      return combineGuidance(Float64Array.from(out.data), guidance);
    };
    const schedule = buildSchedule(manifest.schedule);
    const levels = samplingLevels(manifest.schedule.trainSteps, steps);
    const result = await sampleDdim(
      schedule,
      Float64Array.from(noise.data as Float32Array),
      levels,
      network,
    );
    expect(result.nfe).toBe(10);
    expect(calls.map((ts) => ts[0])).toEqual([900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    const expected = tensor(t, 'ddim.expected_latent', 'F64').data as Float64Array;
    const err = maxAbsDiff(result.sample, expected);
    console.log(`${id}: 10-step DDIM max |diff| ${err.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(DDIM_TOLERANCE);
    // and the latent is not trivially close to its starting noise
    expect(
      maxAbsDiff(result.sample, Float64Array.from(noise.data as Float32Array)),
    ).toBeGreaterThan(0.1);
  });
});
