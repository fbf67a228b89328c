// The automatic edit mask (DiffEdit; Couairon et al., ICLR 2023; ALGORITHMS.md §5): noise the
// photo's latent x to an encode strength r with n seeded draws, ask the network for the guided
// noise under the edit prompt and under the source prompt (one call of 4 rows per draw), and
// average |ε̂_e − ε̂_s| over draws and channels. Where the prompts disagree is where the edit
// should happen: the map is clamped at ratio · mean, scaled to [0, 1] and thresholded at 0.5.
// diffusers' StableDiffusionDiffEditPipeline.generate_mask is the reference
// (test/integration/automask-parity.test.ts).
import { CancelledError, RetraceError } from '../errors.js';
import type { RunOptions } from '../progress.js';
import { GaussianField } from '../runtime/rng.js';
import { alphaBarAt, editLevels } from '../schedulers/schedule.js';
import { scheduleOf, stepsOffset } from './common.js';
import type { DiffusionModel } from './model.js';

export interface AutoMaskSettings {
  /** Noise draws averaged (n). */
  maps: number;
  /** The encode strength r: the level at this fraction of the grid. */
  strength: number;
  /** Clamp at ratio · mean(map) before thresholding at half of it. */
  ratio: number;
  /** The grid the level is taken from (as diffusers' num_inference_steps). */
  steps: number;
  guidance: number;
  seed: number;
}

/** DiffEdit's published settings (diffusers' defaults), guidance as the edit's. */
export const AUTO_MASK_DEFAULTS = {
  maps: 10,
  strength: 0.5,
  ratio: 3,
  steps: 50,
  seed: 0,
} as const;

export interface AutoMask {
  /** 1 = edit, 0 = keep, on the state's grid (`height`×`width`). */
  mask: Uint8Array;
  /** The averaged |ε̂_e − ε̂_s| before clamping. */
  map: Float64Array;
  width: number;
  height: number;
  /** The training level the draws were noised to. */
  level: number;
  /** Network calls (one batch of 4 rows per draw). */
  nfe: number;
  /** Share of cells marked. */
  coverage: number;
}

/**
 * The mask for latent `x` ([1, C, h, w]). `noise(j)` gives draw j (C·h·w standard normals); by
 * default a seeded field, so the same settings give the same mask.
 */
export async function autoMask(
  model: DiffusionModel,
  x: Float64Array,
  shape: readonly number[],
  prompts: { source: string; edit: string; negative?: string; sourceNegative?: string },
  settings: AutoMaskSettings,
  run: RunOptions = {},
  noise?: (draw: number) => Float64Array,
): Promise<AutoMask> {
  if (!model.manifest.components.textEncoder) {
    throw new RetraceError(
      'BAD_INPUT',
      `pack ${model.source.id} has no text encoder: an automatic mask compares two prompts; paint a mask instead`,
    );
  }
  const [, C, h, w] = shape as [number, number, number, number];
  const n = C * h * w;
  if (x.length !== n)
    throw new RetraceError(
      'BAD_INPUT',
      `auto mask: latent of ${x.length} values, shape [${shape.join(', ')}]`,
    );
  const { levels } = editLevels(
    model.manifest.schedule.trainSteps,
    settings.steps,
    settings.strength,
    stepsOffset(model),
  );
  const level = levels[levels.length - 1] as number;
  const alphaBar = alphaBarAt(scheduleOf(model), level);
  const a = Math.sqrt(alphaBar);
  const s = Math.sqrt(1 - alphaBar);
  const source = await model.conditioning(
    prompts.source,
    prompts.sourceNegative ?? prompts.negative ?? '',
  );
  const edit = await model.conditioning(prompts.edit, prompts.negative ?? '');
  const rowText = source.cond.length;
  const text = new Float32Array(4 * rowText);
  text.set(source.uncond, 0);
  text.set(source.cond, rowText);
  text.set(edit.uncond, 2 * rowText);
  text.set(edit.cond, 3 * rowText);
  const field = new GaussianField(settings.seed, 0x6d61736b); // "mask"
  const map = new Float64Array(h * w);
  const z4 = new Float64Array(4 * n);
  const g = settings.guidance;
  for (let j = 0; j < settings.maps; j++) {
    if (run.signal?.aborted) throw new CancelledError();
    run.onProgress?.({ phase: 'auto mask', step: j, total: settings.maps });
    const draw = noise ? noise(j) : field.fill(new Float64Array(n), j * n);
    for (let i = 0; i < n; i++) z4[i] = a * (x[i] as number) + s * (draw[i] as number);
    for (let r = 1; r < 4; r++) z4.copyWithin(r * n, 0, n);
    const out = await model.predict(z4, shape.slice(1), [level, level, level, level], text);
    for (let i = 0; i < n; i++) {
      const us = out[i] as number;
      const cs = out[n + i] as number;
      const ue = out[2 * n + i] as number;
      const ce = out[3 * n + i] as number;
      const k = i % (h * w);
      map[k] = (map[k] as number) + Math.abs(ue + g * (ce - ue) - (us + g * (cs - us)));
    }
  }
  run.onProgress?.({ phase: 'auto mask', step: settings.maps, total: settings.maps });
  let mean = 0;
  for (let i = 0; i < map.length; i++) {
    map[i] = (map[i] as number) / (settings.maps * C);
    mean += map[i] as number;
  }
  mean /= map.length;
  const clamp = mean * settings.ratio;
  const mask = new Uint8Array(h * w);
  let on = 0;
  for (let i = 0; i < map.length; i++) {
    const v = Math.min(map[i] as number, clamp) / clamp;
    if (v > 0.5) {
      mask[i] = 1;
      on += 1;
    }
  }
  return { mask, map, width: w, height: h, level, nfe: settings.maps, coverage: on / mask.length };
}
