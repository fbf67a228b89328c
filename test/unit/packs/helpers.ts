// Builds small pack folders for the loader and registry tests from the ONNX fixtures.
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const NETWORKS = path.resolve('test/fixtures/networks');
export const WORD_LEVEL = path.resolve('test/fixtures/tokenizers/word-level/tokenizer.json');

export async function sha256Of(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** A restoration pack (pixel space, one network) named `id` under `root`. */
export async function makeRestorePack(
  root: string,
  id: string,
  edit: (m: Record<string, unknown>) => void = () => {},
): Promise<string> {
  const dir = path.join(root, id);
  await mkdir(dir, { recursive: true });
  await copyFile(path.join(NETWORKS, 'resfusion-oracle.onnx'), path.join(dir, 'unet.onnx'));
  const manifest: Record<string, unknown> = {
    format: 'retrace-pack/1',
    id,
    name: `Restore ${id}`,
    task: 'restoration',
    space: 'pixel',
    resolution: { default: [64, 64], multipleOf: 8 },
    schedule: { kind: 'resfusion_truncated', betaStart: 0.0001, betaEnd: 0.02, trainSteps: 1000 },
    prediction: 'resnoise',
    timestepInput: 'int64',
    timestepIsIndex: true,
    components: {
      unet: { file: 'unet.onnx', sha256: await sha256Of(path.join(dir, 'unet.onnx')) },
    },
    defaults: { steps: 5 },
    restoration: { degradation: 'noise', steps: 5 },
    licence: 'test',
  };
  edit(manifest);
  await writeFile(path.join(dir, 'pack.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

/** A pixel-space text-to-image pack with the word-level tokenizer.json. */
export async function makeTextPack(root: string, id: string): Promise<string> {
  const dir = path.join(root, id);
  await mkdir(dir, { recursive: true });
  await copyFile(path.join(NETWORKS, 'tiny-eps.onnx'), path.join(dir, 'unet.onnx'));
  await copyFile(path.join(NETWORKS, 'gaussian-denoiser.onnx'), path.join(dir, 'text.onnx'));
  await copyFile(WORD_LEVEL, path.join(dir, 'tokenizer.json'));
  const manifest = {
    format: 'retrace-pack/1',
    id,
    name: `Text ${id}`,
    task: 'text-to-image',
    space: 'pixel',
    resolution: { default: [32, 32], multipleOf: 8 },
    schedule: { kind: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012, trainSteps: 1000 },
    prediction: 'epsilon',
    timestepInput: 'int64',
    components: {
      unet: { file: 'unet.onnx', sha256: await sha256Of(path.join(dir, 'unet.onnx')) },
      textEncoder: { file: 'text.onnx' },
      tokenizer: { file: 'tokenizer.json', maxLength: 12 },
    },
    defaults: { steps: 20, guidance: 3, gamma: 0.94 },
    tuning: { method: 'b2-diffurl', base: 'shapes-base', metrics: { alignment: 0.9 } },
    licence: 'test',
  };
  await writeFile(path.join(dir, 'pack.json'), JSON.stringify(manifest, null, 2));
  await writeFile(path.join(dir, 'MODEL_CARD.md'), '# card\n');
  await writeFile(path.join(dir, 'eval.json'), '{}');
  return dir;
}
