// Parameters of every engine job, as zod schemas shared by the CLI, the engine host and the
// renderer: one definition of what a valid request is, parsed once at each edge. Fields a user
// leaves out are filled from the pack's defaults by the engine, not here.
import { z } from 'zod';

const prompt = z.string().max(4000);
const seed = z
  .number()
  .int()
  .min(0)
  .max(2 ** 32 - 1);
const filePath = z.string().min(1).max(4096);

export const timeShiftSchema = z.strictObject({
  window: z.number().int().min(0).max(1000),
  cutoff: z.number().int().min(0).max(100_000),
  variant: z.enum(['paper', 'released-code', 'data-variance']).default('paper'),
});

export const samplerSchema = z.enum(['ddim', 'bdia']);

export const generateParamsSchema = z.strictObject({
  model: z.string().min(1),
  prompt,
  negativePrompt: prompt.default(''),
  steps: z.number().int().min(1).max(1000).optional(),
  guidance: z.number().min(0).max(50).optional(),
  seed: seed.optional(),
  count: z.number().int().min(1).max(256).default(1),
  sampler: samplerSchema.default('ddim'),
  gamma: z.number().min(0).max(1).optional(),
  eta: z.number().min(0).max(1).default(0),
  /** `null` turns Time-Shift off; absent uses the pack's default. */
  timeShift: timeShiftSchema.nullable().optional(),
  width: z.number().int().min(8).max(4096).optional(),
  height: z.number().int().min(8).max(4096).optional(),
});

export const invertParamsSchema = z.strictObject({
  model: z.string().min(1),
  image: filePath,
  prompt,
  negativePrompt: prompt.default(''),
  steps: z.number().int().min(2).max(1000).optional(),
  strength: z.number().gt(0).max(1).optional(),
  gamma: z.number().gt(0).max(1).optional(),
  guidance: z.number().min(0).max(50).optional(),
  /** Accept γ below the safe limit (errors grow like (1/γ)^M). */
  allowLowGamma: z.boolean().default(false),
});

/** Feather of a mask's edge, in pixels of the photo (absent: 0.5 % of its long side). */
const feather = z.number().min(0).max(1000);

export const replayParamsSchema = z.strictObject({
  inversion: filePath,
  /**
   * The photo the inversion was made from: the result comes back at its full size, composited
   * onto it (its sha256 must match the file's record). Absent: the working-size image.
   */
  source: filePath.optional(),
  /** With `source`: edit only where this mask is white (ALGORITHMS.md §5). */
  mask: filePath.optional(),
  feather: feather.optional(),
  /** The edit: a new prompt; absent replays the source prompt (the round trip). */
  prompt: prompt.optional(),
  negativePrompt: prompt.optional(),
  guidance: z.number().min(0).max(50).optional(),
  model: z.string().min(1).optional(),
  /**
   * Replay on a pack other than the one that inverted (another precision or export of the same
   * model): allowed with a warning, and the replay reports how far from the source it landed.
   */
  allowOtherPack: z.boolean().optional(),
});

/** Invert and replay in one job, the result at the photo's own size (ALGORITHMS.md §5). */
export const editParamsSchema = z.strictObject({
  model: z.string().min(1),
  image: filePath,
  /** What the photo shows (the inversion's prompt). */
  sourcePrompt: prompt,
  /** What it should show. */
  prompt,
  negativePrompt: prompt.default(''),
  steps: z.number().int().min(2).max(1000).optional(),
  strength: z.number().gt(0).max(1).optional(),
  gamma: z.number().gt(0).max(1).optional(),
  guidance: z.number().min(0).max(50).optional(),
  allowLowGamma: z.boolean().default(false),
  /** A mask image: white (or opaque) = edit, any size (scaled to the photo). */
  mask: filePath.optional(),
  /** Find the mask from the two prompts (DiffEdit) instead. */
  autoMask: z.boolean().default(false),
  /** DiffEdit's clamp ratio: a cell is marked above ratio/2 × the mean difference (lower: larger masks). */
  maskRatio: z.number().min(1).max(20).optional(),
  /** Write the mask used (full size, 8-bit grey) here. */
  maskOut: filePath.optional(),
  feather: feather.optional(),
  /** The long side of the working image, a multiple of the pack's; absent: the pack's size. */
  workingSize: z.number().int().min(8).max(4096).optional(),
  /** Also write the inversion, for replays later. */
  exportInversion: filePath.optional(),
  /** `ddim-inversion`: the inexact baseline, for comparisons (no inversion file). */
  method: z.enum(['bdia', 'ddim-inversion']).default('bdia'),
});

/** The automatic mask alone (the Edit view shows it before the user touches it up). */
export const autoMaskParamsSchema = z.strictObject({
  model: z.string().min(1),
  image: filePath,
  sourcePrompt: prompt,
  prompt,
  negativePrompt: prompt.default(''),
  guidance: z.number().min(0).max(50).optional(),
  maskRatio: z.number().min(1).max(20).optional(),
  feather: feather.optional(),
  workingSize: z.number().int().min(8).max(4096).optional(),
});

/** The edit's params, with the one rule zod's object cannot say: one kind of mask at most. */
export const editRequestSchema = editParamsSchema.refine(
  (p) => !(p.mask !== undefined && p.autoMask),
  { message: 'give a mask or ask for the automatic one, not both', path: ['autoMask'] },
);

export const roundtripParamsSchema = invertParamsSchema.extend({
  method: z.enum(['bdia', 'ddim-inversion']).default('bdia'),
});

export const restoreParamsSchema = z.strictObject({
  model: z.string().min(1),
  inputs: z.array(filePath).min(1),
  outputDir: filePath,
  recursive: z.boolean().default(false),
  skipExisting: z.boolean().default(false),
  seed: seed.default(0),
  tile: z.number().int().min(16).max(4096).optional(),
  overlap: z.number().int().min(0).max(1024).optional(),
  steps: z.number().int().min(1).max(100).optional(),
  /** No noise between steps (the pack's default when absent): sharper PSNR, less texture. */
  deterministic: z.boolean().optional(),
  format: z.enum(['same', 'png', 'jpeg', 'webp', 'tiff', 'avif']).default('same'),
  /** Where to write the JSON report (a CSV goes beside it); absent: `<outputDir>/retrace-report.json`. */
  report: filePath.optional(),
});

export type GenerateParams = z.input<typeof generateParamsSchema>;
export type InvertParams = z.input<typeof invertParamsSchema>;
export type ReplayParams = z.input<typeof replayParamsSchema>;
export type RoundtripParams = z.input<typeof roundtripParamsSchema>;
export type EditParams = z.input<typeof editParamsSchema>;
export type AutoMaskParams = z.input<typeof autoMaskParamsSchema>;
export type RestoreParams = z.input<typeof restoreParamsSchema>;
export type TimeShift = z.output<typeof timeShiftSchema>;
