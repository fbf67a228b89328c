// The engine against the model factory: each committed restoration pack, opened through
// NetworkSession and sampled by restoreResfusion with the noise the Python sampler used, must
// reproduce the factory's 5-step output (test/fixtures/parity/restore-<task>.safetensors).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, type Tensor } from '../../electron/engine/formats/safetensors.js';
import { packManifestSchema } from '../../electron/engine/packs/schema.js';
import { NetworkSession } from '../../electron/engine/runtime/session.js';
import { maxAbsDiff } from '../../electron/engine/runtime/tensors.js';
import { restoreResfusion } from '../../electron/engine/schedulers/resfusion.js';
import { buildSchedule, scheduleLength } from '../../electron/engine/schedulers/schedule.js';

const SIZE = 32;
const ROW = 3 * SIZE * SIZE;

function tensor(tensors: Map<string, Tensor>, name: string, dtype: Tensor['dtype']): Tensor {
  const t = tensors.get(name);
  if (!t || t.dtype !== dtype) throw new Error(`parity vectors: no ${dtype} tensor "${name}"`);
  return t;
}

function floats(t: Tensor): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new Error('expected F32 data');
  return t.data;
}

describe.each(['restore-denoise', 'restore-lowlight'])('%s pack', (id) => {
  const dir = path.resolve('models/packs', id);
  let loaded: ReturnType<typeof open> | undefined;
  const load = () => (loaded ??= open());
  afterAll(async () => {
    if (loaded) await (await loaded).session.dispose();
  });

  async function open() {
    const manifest = packManifestSchema.parse(
      JSON.parse(await readFile(path.join(dir, 'pack.json'), 'utf8')),
    );
    const vectors = await readSafetensors(path.resolve(`test/fixtures/parity/${id}.safetensors`));
    const session = await NetworkSession.open(path.join(dir, manifest.components.unet.file), {
      provider: 'cpu',
      threads: 1,
    });
    return { manifest, vectors, session };
  }

  it('pack.json is a valid Resfusion restoration manifest naming its network by sha256', async () => {
    const { manifest } = await load();
    expect(manifest.id).toBe(id);
    expect(manifest.task).toBe('restoration');
    expect(manifest.space).toBe('pixel');
    expect(manifest.prediction).toBe('resnoise');
    expect(manifest.timestepInput).toBe('int64');
    expect(manifest.timestepIsIndex).toBe(true);
    expect(manifest.schedule).toMatchObject({ kind: 'resfusion_truncated', trainSteps: 12 });
    expect(manifest.restoration?.steps).toBe(5);
    expect(manifest.restoration?.tile).toBeGreaterThan(0);
    const bytes = await readFile(path.join(dir, manifest.components.unet.file));
    expect(manifest.components.unet.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('onnxruntime-node reproduces the network vectors within 1e-4', async () => {
    const { vectors, session } = await load();
    expect(vectors.metadata).toMatchObject({ format: 'retrace-parity/1', pack: id });
    const sample = tensor(vectors.tensors, 'unet.sample', 'F32');
    const timestep = tensor(vectors.tensors, 'unet.timestep', 'I64');
    const expected = floats(tensor(vectors.tensors, 'unet.out_sample', 'F32'));
    const out = await session.run({
      sample: { data: floats(sample), dims: sample.shape },
      timestep: { data: timestep.data as BigInt64Array, dims: timestep.shape },
    });
    expect(out.dims).toEqual([2, 3, SIZE, SIZE]);
    const err = maxAbsDiff(out.data, expected);
    console.log(`${id}: unet max |diff| ${err.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(1e-4);
  });

  it('restoreResfusion with the stored noise reproduces the Python sampler within 1e-3', async () => {
    const { manifest, vectors, session } = await load();
    const schedule = buildSchedule(manifest.schedule);
    expect(scheduleLength(schedule)).toBe(manifest.restoration?.steps);
    const degraded = Float64Array.from(floats(tensor(vectors.tensors, 'degraded', 'F32')));
    const noise = floats(tensor(vectors.tensors, 'noise', 'F32'));
    const expected = floats(tensor(vectors.tensors, 'expected', 'F32'));
    const timesteps: number[][] = [];
    const net = async (z: Float64Array, t: number[]) => {
      timesteps.push(t);
      const out = await session.run({
        sample: { data: Float32Array.from(z), dims: [t.length, 6, SIZE, SIZE] },
        timestep: { data: t, dims: [t.length] },
      });
      return Float64Array.from(out.data);
    };
    const stream = (k: number) => Float64Array.from(noise.subarray(k * ROW, (k + 1) * ROW));
    const result = await restoreResfusion(schedule, degraded, net, stream);
    expect(result.nfe).toBe(5);
    expect(timesteps).toEqual([[4], [3], [2], [1], [0]]);
    const err = maxAbsDiff(result.sample, expected);
    console.log(`${id}: 5-step sampler max |diff| ${err.toExponential(2)}`);
    expect(err).toBeLessThanOrEqual(1e-3);
    // the vectors pin the noise too: the same input with the streams in another order is far off
    const swapped = await restoreResfusion(schedule, degraded, net, (k) => stream(4 - k));
    expect(maxAbsDiff(swapped.sample, expected)).toBeGreaterThan(1e-2);
  });
});
