// Resfusion restoration of one photo (ALGORITHMS.md §3): pad to the pack's multiple, cut into
// overlapping tiles when the photo is large, run the T'-step sampler on each tile with noise drawn
// from one pixel-indexed field (so overlaps agree), blend with feathered weights, crop back.
// Memory stays bounded by the tile size for the networks and by a few image planes for the rest.
import { RetraceError, throwIfAborted } from '../errors.js';
import { cropTile, featherWeight, fieldNoise, planTiles, TileBlender } from '../images/tiling.js';
import type { RunOptions } from '../progress.js';
import { GaussianField } from '../runtime/rng.js';
import { restoreResfusion } from '../schedulers/resfusion.js';
import { scheduleLength } from '../schedulers/schedule.js';
import { requireTask, scheduleOf, secondsSince } from './common.js';
import type { ModelImage } from './invert.js';
import type { DiffusionModel } from './model.js';

/** Tile side and overlap when the pack does not say. */
const DEFAULT_TILE = 256;
const DEFAULT_OVERLAP = 32;

export interface RestoreOptions {
  seed: number;
  tile?: number;
  overlap?: number;
  /** Must equal the pack's step count when given: a Resfusion pack restores in exactly T' steps. */
  steps?: number;
  /** Leave out the noise added after each step but the last (default: the pack's setting). */
  deterministic?: boolean;
}

export interface RestoreOutput {
  image: ModelImage;
  nfe: number;
  tiles: number;
  seconds: number;
}

/** Reflect-pads a [3, H, W] image on the right and bottom to `width` × `height`. */
function reflectPad(image: ModelImage, width: number, height: number): Float32Array {
  if (width === image.width && height === image.height) return image.chw;
  const out = new Float32Array(3 * width * height);
  const reflect = (i: number, n: number) => {
    if (n === 1) return 0;
    const period = 2 * (n - 1);
    const m = i % period;
    return m < n ? m : period - m;
  };
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < height; y++) {
      const sy = reflect(y, image.height);
      for (let x = 0; x < width; x++) {
        out[(c * height + y) * width + x] = image.chw[
          (c * image.height + sy) * image.width + reflect(x, image.width)
        ] as number;
      }
    }
  }
  return out;
}

function cropTo(
  chw: Float32Array,
  width: number,
  height: number,
  target: ModelImage,
): Float32Array {
  const out = new Float32Array(3 * target.width * target.height);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < target.height; y++) {
      const from = (c * height + y) * width;
      out.set(chw.subarray(from, from + target.width), (c * target.height + y) * target.width);
    }
  }
  return out;
}

export async function restoreImage(
  model: DiffusionModel,
  image: ModelImage,
  options: RestoreOptions,
  run: RunOptions = {},
): Promise<RestoreOutput> {
  const started = performance.now();
  requireTask(model, 'restoration');
  const schedule = scheduleOf(model);
  const steps = scheduleLength(schedule);
  if (options.steps !== undefined && options.steps !== steps) {
    throw new RetraceError(
      'BAD_INPUT',
      `steps: pack ${model.source.id} restores in exactly ${steps} steps (its truncated schedule), got ${options.steps}`,
    );
  }
  const spec = model.manifest.restoration;
  const multiple = model.manifest.resolution.multipleOf;
  const tileSide = options.tile ?? spec?.tile ?? DEFAULT_TILE;
  const overlap = options.overlap ?? spec?.overlap ?? DEFAULT_OVERLAP;
  if (tileSide % multiple !== 0 || tileSide < multiple) {
    throw new RetraceError('BAD_INPUT', `tile ${tileSide} must be a multiple of ${multiple}`);
  }
  if (overlap >= tileSide) {
    throw new RetraceError(
      'BAD_INPUT',
      `overlap ${overlap} must be smaller than the tile ${tileSide}`,
    );
  }
  const deterministic = options.deterministic ?? spec?.deterministic ?? false;
  const width = Math.ceil(image.width / multiple) * multiple;
  const height = Math.ceil(image.height / multiple) * multiple;
  const padded = reflectPad(image, width, height);
  const tiles = planTiles(width, height, { tile: tileSide, overlap, multiple });
  const blender = tiles.length > 1 ? new TileBlender(width, height, 3) : undefined;
  const field = new GaussianField(options.seed);
  let nfe = 0;
  let whole: Float64Array | undefined;
  for (const [index, tile] of tiles.entries()) {
    throwIfAborted(run.signal);
    const degraded = cropTile(padded, width, height, tile);
    const result = await restoreResfusion(
      schedule,
      degraded,
      (input, timesteps) =>
        model.predict(input, [6, tile.height, tile.width], timesteps, undefined, input.length / 2),
      (stream) =>
        deterministic && stream > 0
          ? new Float64Array(degraded.length)
          : fieldNoise(field, stream, tile, width, height),
      {
        ...(run.signal ? { signal: run.signal } : {}),
        onStep: (done) =>
          run.onProgress?.({
            phase: 'restoring',
            step: index * steps + done,
            total: tiles.length * steps,
            ...(tiles.length > 1 ? { detail: `tile ${index + 1}/${tiles.length}` } : {}),
          }),
      },
    );
    nfe += result.nfe;
    if (blender) blender.add(tile, result.sample, featherWeight(tile, overlap, width, height));
    else whole = result.sample;
  }
  const full = blender ? blender.result() : Float32Array.from(whole ?? []);
  const chw =
    width === image.width && height === image.height ? full : cropTo(full, width, height, image);
  return {
    image: { chw, width: image.width, height: image.height },
    nfe,
    tiles: tiles.length,
    seconds: secondsSince(started),
  };
}
