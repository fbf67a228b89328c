// The `retrace-pack/1` manifest (pack.json), parsed once at the edge. Every field the engine
// relies on is checked here so that a broken pack fails with a message naming the field.
import { z } from 'zod';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex sha256');
const relativeFile = z
  .string()
  .min(1)
  .refine((f) => !f.startsWith('/') && !f.split(/[\\/]/).includes('..'), {
    message: 'must be a path inside the pack folder',
  });

export const componentSchema = z.strictObject({
  file: relativeFile,
  sha256: sha256.optional(),
});

export const tokenizerComponentSchema = z.strictObject({
  file: relativeFile,
  /** Extra files some tokenizer layouts need (CLIP `merges.txt`, `tokenizer_config.json`). */
  merges: relativeFile.optional(),
  config: relativeFile.optional(),
  sha256: sha256.optional(),
  /** Sequence length the text encoder was trained with (CLIP: 77). */
  maxLength: z.number().int().positive().max(4096),
});

export const scheduleSchema = z.strictObject({
  kind: z.enum(['linear', 'scaled_linear', 'resfusion_truncated']),
  betaStart: z.number().positive().max(1),
  betaEnd: z.number().positive().max(2),
  trainSteps: z.number().int().min(2).max(100_000),
});

export const timeShiftSettingsSchema = z.strictObject({
  window: z.number().int().min(0).max(1000),
  cutoff: z.number().int().min(0).max(100_000),
  variant: z.enum(['paper', 'released-code', 'data-variance']).default('paper'),
});

export const packManifestSchema = z
  .strictObject({
    format: z.literal('retrace-pack/1'),
    id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be folder-safe: a-z 0-9 . _ -'),
    name: z.string().min(1).max(200),
    description: z.string().max(2000).optional(),
    version: z.string().max(40).optional(),
    task: z.enum(['text-to-image', 'restoration']),
    space: z.enum(['latent', 'pixel']),
    resolution: z.strictObject({
      default: z.tuple([z.number().int().positive(), z.number().int().positive()]),
      multipleOf: z.number().int().positive().max(512),
    }),
    schedule: scheduleSchema,
    prediction: z.enum(['epsilon', 'v_prediction', 'resnoise']),
    timestepInput: z.enum(['int64', 'float32']),
    /** Resfusion networks take the 0-based index of the truncated schedule, not a DDPM time. */
    timestepIsIndex: z.boolean().default(false),
    components: z.strictObject({
      unet: componentSchema,
      textEncoder: componentSchema.optional(),
      vaeEncoder: componentSchema.optional(),
      vaeDecoder: componentSchema.optional(),
      tokenizer: tokenizerComponentSchema.optional(),
    }),
    latent: z
      .strictObject({
        channels: z.number().int().positive().max(64),
        downsample: z.number().int().positive().max(64),
        scale: z.number().positive(),
      })
      .optional(),
    defaults: z
      .strictObject({
        steps: z.number().int().min(1).max(1000).optional(),
        guidance: z.number().min(0).max(50).optional(),
        gamma: z.number().min(0).max(1).optional(),
        strength: z.number().gt(0).max(1).optional(),
        negativePrompt: z.string().max(2000).optional(),
        timeShift: timeShiftSettingsSchema.nullable().optional(),
      })
      .default({}),
    restoration: z
      .strictObject({
        degradation: z.enum(['noise', 'lowlight', 'rain']),
        steps: z.number().int().min(1).max(1000),
        /** Edge of the square tiles the network is happy with, and their overlap, in pixels. */
        tile: z.number().int().positive().optional(),
        overlap: z.number().int().min(0).optional(),
        /** Skip the noise the sampler adds between steps (higher PSNR, less texture). */
        deterministic: z.boolean().default(false),
      })
      .optional(),
    tuning: z
      .strictObject({
        method: z.string().min(1),
        base: z.string().min(1),
        reward: z.string().optional(),
        queries: z.number().int().nonnegative().optional(),
        metrics: z.record(z.string(), z.unknown()).default({}),
        recipe: z.string().optional(),
      })
      .optional(),
    modelCard: relativeFile.optional(),
    licence: z.string().min(1),
  })
  .superRefine((pack, ctx) => {
    const need = (cond: boolean, path: (string | number)[], message: string) => {
      if (!cond) ctx.addIssue({ code: 'custom', path, message });
    };
    // A text-to-image pack without a text encoder is unconditional (prompts are ignored).
    if (pack.components.textEncoder) {
      need(
        !!pack.components.tokenizer,
        ['components', 'tokenizer'],
        'required with a text encoder',
      );
    }
    need(
      pack.task !== 'restoration' || !pack.components.textEncoder,
      ['components', 'textEncoder'],
      'restoration packs take no text',
    );
    if (pack.space === 'latent') {
      need(!!pack.components.vaeEncoder, ['components', 'vaeEncoder'], 'required for latent packs');
      need(!!pack.components.vaeDecoder, ['components', 'vaeDecoder'], 'required for latent packs');
      need(!!pack.latent, ['latent'], 'required for latent packs');
    }
    if (pack.task === 'restoration') {
      need(!!pack.restoration, ['restoration'], 'required for restoration packs');
      need(pack.prediction === 'resnoise', ['prediction'], 'restoration packs predict "resnoise"');
      need(
        pack.schedule.kind === 'resfusion_truncated',
        ['schedule', 'kind'],
        'restoration packs use "resfusion_truncated"',
      );
    }
  });

export type PackManifest = z.output<typeof packManifestSchema>;
export type ScheduleSpec = z.output<typeof scheduleSchema>;
export type TimeShiftSettings = z.output<typeof timeShiftSettingsSchema>;
