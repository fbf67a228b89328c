// A diffusers/optimum ONNX Stable Diffusion folder (model_index.json, unet/, text_encoder/,
// vae_encoder/, vae_decoder/, tokenizer/, scheduler/) described as a `retrace-pack/1` manifest,
// so that an SD model a user exported runs through the same pipelines as a bundled pack. Only
// the small JSON configs and the unet's input list are read here; nothing is copied.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { RetraceError } from '../errors.js';
import { readOnnxInputs } from '../formats/onnx.js';
import { packManifestSchema, type PackManifest } from './schema.js';

export interface DiffusersDescription {
  manifest: PackManifest;
  /** Stable Diffusion's `steps_offset` (added to every grid timestep). */
  stepsOffset: number;
}

const COMPONENTS = {
  unet: 'unet/model.onnx',
  textEncoder: 'text_encoder/model.onnx',
  vaeEncoder: 'vae_encoder/model.onnx',
  vaeDecoder: 'vae_decoder/model.onnx',
} as const;

async function readJsonObject(
  file: string,
  what: string,
  required: boolean,
): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new RetraceError('BAD_PACK', `${file}: missing ${what}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new RetraceError('BAD_PACK', `${file}: the ${what} is not valid JSON`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new RetraceError('BAD_PACK', `${file}: the ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function num(
  config: Record<string, unknown> | undefined,
  key: string,
  file: string,
): number | undefined {
  const v = config?.[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new RetraceError('BAD_PACK', `${file}: "${key}" must be a number`);
  }
  return v;
}

/** A folder-safe pack id from a folder name ("Stable Diffusion v1.5" → "stable-diffusion-v1.5"). */
export function idFromFolderName(name: string): string {
  const id = name
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .replace(/-+$/, '')
    .slice(0, 64);
  return id || 'imported';
}

/** Reads the folder's configs into a manifest; every missing or unsupported piece is named. */
export async function describeDiffusersFolder(
  dir: string,
  options: { id?: string } = {},
): Promise<DiffusersDescription> {
  const root = path.resolve(dir);
  const info = await stat(root).catch(() => undefined);
  if (!info?.isDirectory()) throw new RetraceError('BAD_PACK', `${root}: no such folder`);
  const index = path.join(root, 'model_index.json');
  if (!existsSync(index)) {
    throw new RetraceError(
      'BAD_PACK',
      `${root}: not a diffusers folder (no model_index.json; expected the layout optimum's ONNX export writes)`,
    );
  }
  await readJsonObject(index, 'model index', true);
  for (const [, rel] of Object.entries(COMPONENTS)) {
    const file = path.join(root, rel);
    if (!existsSync(file)) {
      throw new RetraceError(
        'BAD_PACK',
        `${file}: missing (an ONNX Stable Diffusion folder needs ${rel})`,
      );
    }
  }

  const schedulerFile = path.join(root, 'scheduler', 'scheduler_config.json');
  const scheduler = (await readJsonObject(schedulerFile, 'scheduler config', true)) as Record<
    string,
    unknown
  >;
  const betaSchedule = scheduler.beta_schedule ?? 'linear';
  if (betaSchedule !== 'linear' && betaSchedule !== 'scaled_linear') {
    throw new RetraceError(
      'BAD_PACK',
      `${schedulerFile}: beta_schedule ${JSON.stringify(betaSchedule)} is not supported (linear or scaled_linear)`,
    );
  }
  if (Array.isArray(scheduler.trained_betas) && scheduler.trained_betas.length > 0) {
    throw new RetraceError('BAD_PACK', `${schedulerFile}: trained_betas are not supported`);
  }
  const prediction = scheduler.prediction_type ?? 'epsilon';
  if (prediction !== 'epsilon' && prediction !== 'v_prediction') {
    throw new RetraceError(
      'BAD_PACK',
      `${schedulerFile}: prediction_type ${JSON.stringify(prediction)} is not supported (epsilon or v_prediction)`,
    );
  }
  const stepsOffset = num(scheduler, 'steps_offset', schedulerFile) ?? 0;

  const unetConfigFile = path.join(root, 'unet', 'config.json');
  const unetConfig = await readJsonObject(unetConfigFile, 'unet config', false);
  const vaeConfigFile = [
    path.join(root, 'vae_decoder', 'config.json'),
    path.join(root, 'vae_encoder', 'config.json'),
  ].find((f) => existsSync(f));
  const vaeConfig = vaeConfigFile
    ? await readJsonObject(vaeConfigFile, 'VAE config', false)
    : undefined;
  const unetChannels = num(unetConfig, 'in_channels', unetConfigFile);
  const vaeChannels = vaeConfigFile ? num(vaeConfig, 'latent_channels', vaeConfigFile) : undefined;
  if (unetChannels !== undefined && vaeChannels !== undefined && unetChannels !== vaeChannels) {
    throw new RetraceError(
      'BAD_PACK',
      `${unetConfigFile}: the unet takes ${unetChannels} channels but the VAE makes ${vaeChannels} (inpainting and other conditioned unets are not supported)`,
    );
  }
  const channels = unetChannels ?? vaeChannels ?? 4;
  const blocks = vaeConfig?.block_out_channels;
  const downsample = Array.isArray(blocks) && blocks.length > 0 ? 2 ** (blocks.length - 1) : 8;
  const scale = (vaeConfigFile && num(vaeConfig, 'scaling_factor', vaeConfigFile)) || 0.18215;
  // The exported UNet halves the latent once per down block but the last, and its skip
  // connections need the halves to be exact: the pixel size must be a multiple of this.
  const unetBlocks = unetConfig?.block_out_channels;
  const unetFactor =
    Array.isArray(unetBlocks) && unetBlocks.length > 0 ? 2 ** (unetBlocks.length - 1) : 8;
  const sampleSize = unetConfig?.sample_size;
  let latentSize: [number, number] = [64, 64];
  if (typeof sampleSize === 'number') latentSize = [sampleSize, sampleSize];
  else if (
    Array.isArray(sampleSize) &&
    sampleSize.length === 2 &&
    sampleSize.every((s) => typeof s === 'number')
  ) {
    latentSize = [sampleSize[0] as number, sampleSize[1] as number];
  }

  // The tokenizer: CLIP's vocab.json + merges.txt, or a tokenizer.json.
  const tokDir = path.join(root, 'tokenizer');
  const tokConfigFile = path.join(tokDir, 'tokenizer_config.json');
  const tokConfig = await readJsonObject(tokConfigFile, 'tokenizer config', false);
  const textConfig = await readJsonObject(
    path.join(root, 'text_encoder', 'config.json'),
    'text encoder config',
    false,
  );
  const configured = num(tokConfig, 'model_max_length', tokConfigFile);
  const positions = textConfig?.max_position_embeddings;
  // transformers writes a huge sentinel when no length is set; fall back to the encoder's.
  const maxLength =
    configured !== undefined && configured >= 2 && configured <= 4096
      ? configured
      : typeof positions === 'number' && positions >= 2 && positions <= 4096
        ? positions
        : 77;
  let tokenizer: NonNullable<PackManifest['components']['tokenizer']>;
  const config = existsSync(tokConfigFile) ? { config: 'tokenizer/tokenizer_config.json' } : {};
  if (existsSync(path.join(tokDir, 'vocab.json')) && existsSync(path.join(tokDir, 'merges.txt'))) {
    tokenizer = {
      file: 'tokenizer/vocab.json',
      merges: 'tokenizer/merges.txt',
      ...config,
      maxLength,
    };
  } else if (existsSync(path.join(tokDir, 'tokenizer.json'))) {
    tokenizer = { file: 'tokenizer/tokenizer.json', ...config, maxLength };
  } else {
    throw new RetraceError(
      'BAD_PACK',
      `${tokDir}: missing tokenizer (expected vocab.json + merges.txt, or tokenizer.json)`,
    );
  }

  // The unet's timestep dtype, read from the graph without loading the weights.
  const unetInputs = await readOnnxInputs(path.join(root, COMPONENTS.unet));
  const timestepType = unetInputs.find((i) => i.name === 'timestep')?.type;
  const timestepInput: PackManifest['timestepInput'] =
    timestepType === 'float32' || timestepType === 'float16' || timestepType === 'float64'
      ? 'float32'
      : 'int64';

  const id = options.id ?? idFromFolderName(path.basename(root));
  const raw = {
    format: 'retrace-pack/1',
    id,
    name: path.basename(root),
    description: `Stable Diffusion imported from ${root}`,
    task: 'text-to-image',
    space: 'latent',
    resolution: {
      default: [latentSize[1] * downsample, latentSize[0] * downsample],
      multipleOf: downsample * unetFactor,
    },
    schedule: {
      kind: betaSchedule,
      betaStart: num(scheduler, 'beta_start', schedulerFile) ?? 0.0001,
      betaEnd: num(scheduler, 'beta_end', schedulerFile) ?? 0.02,
      trainSteps: num(scheduler, 'num_train_timesteps', schedulerFile) ?? 1000,
    },
    prediction,
    timestepInput,
    components: {
      unet: { file: COMPONENTS.unet },
      textEncoder: { file: COMPONENTS.textEncoder },
      vaeEncoder: { file: COMPONENTS.vaeEncoder },
      vaeDecoder: { file: COMPONENTS.vaeDecoder },
      tokenizer,
    },
    latent: { channels, downsample, scale },
    defaults: { steps: 50, guidance: 7.5, gamma: 0.94, strength: 0.8 },
    licence: `as published with the model in ${root}`,
  };
  const parsed = packManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join('.') ?? '';
    throw new RetraceError(
      'BAD_PACK',
      where === 'id'
        ? `pack id ${JSON.stringify(id)}: ${issue?.message ?? 'invalid'}`
        : `${root}: cannot describe this folder as a pack (${where}: ${issue?.message ?? 'invalid'})`,
    );
  }
  return { manifest: parsed.data, stepsOffset };
}
