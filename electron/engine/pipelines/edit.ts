// A local, exact edit of a photo's latent (ALGORITHMS.md §5): invert with the source prompt while
// keeping every state of the trajectory, then replay with the edit prompt, blending each new
// state towards the source's where the mask is below 1. Where the mask is 0 the edit's states are
// the source's bit for bit, so the final latent there is the photo's own. A masked edit costs no
// more network calls than an unmasked one: the trajectory comes free with the inversion. From an
// inversion file the source trajectory is replayed first (and is skipped when not needed).
import type { InvertParams } from '../../contract/jobs.js';
import type { RunOptions } from '../progress.js';
import type { MaskBlend } from '../schedulers/bdia.js';
import { sampleDdim } from '../schedulers/ddim.js';
import { invertDdimNaive } from '../schedulers/ddim-inversion.js';
import { editLevels } from '../schedulers/schedule.js';
import { guidedEstimator, scheduleOf, secondsSince, stepReporter, stepsOffset } from './common.js';
import {
  decodeState,
  encode,
  invertImage,
  resolveInvert,
  replayLatent,
  type InversionState,
  type ModelImage,
  type ReplayOptions,
} from './invert.js';
import type { DiffusionModel } from './model.js';

/** The mask on the state's grid (`height`×`width`), weights in [0, 1]. */
export type LatentMask = (height: number, width: number) => Float64Array;

export interface EditLatents {
  inversion: InversionState;
  /** The source latent x (on BDIA's lattice): what a replay with the source prompt returns. */
  source: Float64Array;
  /** The edited latent w. */
  edited: Float64Array;
  nfe: number;
  seconds: number;
}

/** An inversion's source trajectory kept in memory: every state by level index, and x. */
export interface SourceTrajectory {
  states: Map<number, Float64Array>;
  source: Float64Array;
}

/** Kept copies of a trajectory's states, by kept-level index. */
class Trajectory {
  private readonly states = new Map<number, Float64Array>();

  static of(kept: SourceTrajectory): Trajectory {
    const t = new Trajectory();
    for (const [k, z] of kept.states) t.set(k, z);
    return t;
  }

  record = (index: number, z: Float64Array): void => {
    this.states.set(index, Float64Array.from(z));
  };

  set(index: number, z: Float64Array): void {
    this.states.set(index, z);
  }

  blend(weights: Float64Array): MaskBlend {
    return {
      weights,
      state: (index) => {
        const z = this.states.get(index);
        if (!z) throw new Error(`masked replay: no source state at level index ${index}`);
        return z;
      },
    };
  }
}

function gridOf(inversion: InversionState): [number, number] {
  const shape = inversion.shape;
  return [shape[2] as number, shape[3] as number];
}

/** True when the edit would replay the source exactly (same prompts and guidance). */
export function isIdentityEdit(inversion: InversionState, edit: ReplayOptions): boolean {
  return (
    (edit.prompt ?? inversion.prompt) === inversion.prompt &&
    (edit.negativePrompt ?? inversion.negativePrompt) === inversion.negativePrompt &&
    (edit.guidance ?? inversion.guidance) === inversion.guidance
  );
}

/** Invert and replay in one job: NFE = (M − 1) + (M − 1), mask or not. */
export async function editImageLatents(
  model: DiffusionModel,
  image: ModelImage,
  invert: InvertParams,
  edit: ReplayOptions,
  mask: LatentMask | undefined,
  run: RunOptions = {},
  encoded?: { latent: Float64Array; shape: number[] },
): Promise<EditLatents> {
  const started = performance.now();
  const trajectory = new Trajectory();
  const inverted = await invertImage(model, image, invert, run, {
    ...(mask ? { onState: trajectory.record } : {}),
    ...(encoded ? { encoded } : {}),
  });
  const inversion = inverted.inversion;
  if (isIdentityEdit(inversion, edit)) {
    // The replay would return x bit for bit (docs/exactness.md): no need to run it.
    return {
      inversion,
      source: inverted.latent,
      edited: inverted.latent,
      nfe: inverted.nfe,
      seconds: secondsSince(started),
    };
  }
  const replayed = await replayLatent(
    model,
    inversion,
    { ...edit, ...(mask ? { blend: trajectory.blend(mask(...gridOf(inversion))) } : {}) },
    run,
  );
  return {
    inversion,
    source: inverted.latent,
    edited: replayed.latent,
    nfe: inverted.nfe + replayed.nfe,
    seconds: secondsSince(started),
  };
}

/**
 * An edit from a stored inversion: the source trajectory is replayed with the source prompt
 * (its end is x, exactly), then the edit replays blended towards it. An identity edit stops
 * after the source replay. NFE = (M − 1) for the source plus (M − 1) for the edit — or only the
 * edit's when the inversion was made in this session and its trajectory was `kept`.
 */
export async function editFromInversion(
  model: DiffusionModel,
  inversion: InversionState,
  edit: ReplayOptions,
  mask: LatentMask | undefined,
  run: RunOptions = {},
  kept?: SourceTrajectory,
): Promise<Omit<EditLatents, 'inversion'>> {
  const started = performance.now();
  if (kept) {
    if (isIdentityEdit(inversion, edit)) {
      return { source: kept.source, edited: kept.source, nfe: 0, seconds: secondsSince(started) };
    }
    const replayed = await replayLatent(
      model,
      inversion,
      {
        ...edit,
        ...(mask ? { blend: Trajectory.of(kept).blend(mask(...gridOf(inversion))) } : {}),
      },
      run,
    );
    return {
      source: kept.source,
      edited: replayed.latent,
      nfe: replayed.nfe,
      seconds: secondsSince(started),
    };
  }
  const trajectory = new Trajectory();
  const top = inversion.levels.length - 1;
  trajectory.set(top, inversion.top);
  trajectory.set(top - 1, inversion.next);
  const source = await replayLatent(model, inversion, { onState: trajectory.record }, run);
  if (isIdentityEdit(inversion, edit)) {
    return {
      source: source.latent,
      edited: source.latent,
      nfe: source.nfe,
      seconds: secondsSince(started),
    };
  }
  const replayed = await replayLatent(
    model,
    inversion,
    { ...edit, ...(mask ? { blend: trajectory.blend(mask(...gridOf(inversion))) } : {}) },
    run,
  );
  return {
    source: source.latent,
    edited: replayed.latent,
    nfe: source.nfe + replayed.nfe,
    seconds: secondsSince(started),
  };
}

/**
 * Δ = D(w) − D(x) at the working size ([3, h, w], the networks' [−1, 1] units). Identical
 * latents give an exact zero without decoding.
 */
export async function changeOf(
  model: DiffusionModel,
  source: Float64Array,
  edited: Float64Array,
  shape: number[],
  size: { width: number; height: number },
  run: RunOptions = {},
): Promise<ModelImage> {
  let same = source.length === edited.length;
  for (let i = 0; same && i < source.length; i++) same = source[i] === edited[i];
  if (same) return { chw: new Float32Array(3 * size.width * size.height), ...size };
  run.onProgress?.({ phase: 'decoding', step: 0, total: 2 });
  const after = await decodeState(model, edited, shape);
  run.onProgress?.({ phase: 'decoding', step: 1, total: 2 });
  const before = await decodeState(model, source, shape);
  const chw = new Float32Array(after.chw.length);
  for (let i = 0; i < chw.length; i++)
    chw[i] = (after.chw[i] as number) - (before.chw[i] as number);
  return { chw, width: after.width, height: after.height };
}

/**
 * The inexact baseline, for comparison only (the Shapes edit benchmark): naive DDIM inversion
 * with the source prompt, DDIM sampling with the edit prompt, the same per-step blend towards the
 * inversion's trajectory. The source latent x is the reference (a naive round trip does not
 * return it, and that drift is part of what is compared). NFE = M + M.
 */
export async function editImageLatentsDdim(
  model: DiffusionModel,
  image: ModelImage,
  invert: InvertParams,
  edit: ReplayOptions,
  mask: LatentMask | undefined,
  run: RunOptions = {},
  encoded?: { latent: Float64Array; shape: number[] },
): Promise<Omit<EditLatents, 'inversion'> & { shape: number[] }> {
  const started = performance.now();
  const p = resolveInvert(model, invert);
  const { levels } = editLevels(
    model.manifest.schedule.trainSteps,
    p.steps,
    p.strength,
    stepsOffset(model),
  );
  const { latent: x, shape } = encoded ?? (await encode(model, image));
  const rowShape = shape.slice(1);
  const schedule = scheduleOf(model);
  const sourceText = model.manifest.components.textEncoder
    ? await model.conditioning(p.prompt, p.negativePrompt)
    : undefined;
  const editText = model.manifest.components.textEncoder
    ? await model.conditioning(edit.prompt ?? p.prompt, edit.negativePrompt ?? p.negativePrompt)
    : undefined;
  const states = new Map<number, Float64Array>();
  const signal = run.signal ? { signal: run.signal } : {};
  const up = await invertDdimNaive(
    schedule,
    x,
    levels,
    guidedEstimator(model, rowShape, sourceText, p.guidance, run.signal),
    {
      ...signal,
      onStep: stepReporter(run, 'inverting'),
      ...(mask
        ? { onState: (k: number, z: Float64Array) => states.set(k, Float64Array.from(z)) }
        : {}),
    },
  );
  const weights = mask ? mask(shape[2] as number, shape[3] as number) : undefined;
  const plane = weights?.length ?? 1;
  const down = await sampleDdim(
    schedule,
    up.sample,
    levels,
    guidedEstimator(model, rowShape, editText, edit.guidance ?? p.guidance, run.signal),
    {
      ...signal,
      onStep: stepReporter(run, 'replaying'),
      ...(weights
        ? {
            afterStep: (k: number, z: Float64Array) => {
              const source = states.get(k) as Float64Array;
              for (let i = 0; i < z.length; i++) {
                const m = weights[i % plane] as number;
                z[i] = m * (z[i] as number) + (1 - m) * (source[i] as number);
              }
            },
          }
        : {}),
    },
  );
  return {
    source: x,
    edited: down.sample,
    shape,
    nfe: up.nfe + down.nfe,
    seconds: secondsSince(started),
  };
}
