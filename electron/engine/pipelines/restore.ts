// Resfusion restoration of one photo (ALGORITHMS.md §3): pad to the pack's multiple, cut into
// overlapping tiles when the photo is large, run the T'-step sampler on each tile with noise drawn
// from one pixel-indexed field (so overlaps agree), blend with feathered weights, crop back.
// Memory stays bounded by the tile size for the networks and by a few image planes for the rest;
// the tiles are chosen from a fixed memory budget (`chooseTiles`): one tile when the photo fits,
// otherwise the tile shape that computes the fewest pixels within it.
import { RetraceError, throwIfAborted } from '../errors.js';
import {
  chooseTiles,
  cropTile,
  describeTiles,
  featherWeight,
  fieldNoise,
  planTiles,
  TileBlender,
  type MemoryModel,
  type TileChoice,
} from '../images/tiling.js';
import type { RunOptions } from '../progress.js';
import { GaussianField } from '../runtime/rng.js';
import { restoreResfusion } from '../schedulers/resfusion.js';
import { scheduleLength } from '../schedulers/schedule.js';
import { requireTask, scheduleOf, secondsSince } from './common.js';
import type { ModelImage } from './invert.js';
import type { DiffusionModel } from './model.js';

/** Smallest tile side and the overlap when the pack does not say. */
const DEFAULT_TILE = 256;
const DEFAULT_OVERLAP = 32;
/** Largest tile: one network call stays a few seconds on a CPU (cancel and progress stay live). */
const MAX_TILE_PIXELS = 1024 * 1024;

/**
 * The memory a restore plans for (checked by bench/run.mjs, `restore 24 MP`): a 1.5 GiB process.
 * Per photo pixel: its Float32 planes (12 B), the blender's mean and weight (16 B), the next
 * file decoding meanwhile (12 B + its raw buffer) and the previous one encoding (≈ 4 B). Per tile
 * pixel: onnxruntime's activations (≈ 1.5 KB for the Retrace restore networks, at any tile size)
 * and the sampler's Float64 buffers.
 */
export const RESTORE_MEMORY: MemoryModel = {
  budgetBytes: 1536 * 2 ** 20,
  baseBytes: 192 * 2 ** 20,
  imageBytesPerPixel: 48,
  networkBytesPerPixel: 2048,
};

export interface RestoreOptions {
  seed: number;
  /** Square tiles of this side (the memory budget's plan when left out). */
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
  /** The tile plan used: tile size, overlap, tile count and why. */
  plan: TilePlan;
  seconds: number;
}

/** The tile plan of a restore: tile size, overlap, count, pixels computed ÷ the photo's, why. */
export type TilePlan = TileChoice;

/**
 * The tile plan `restoreImage` uses for a photo of `width` × `height` with this pack and these
 * options (the CLI and the batch progress use it to size the work before running).
 */
export function restoreTilePlan(
  model: Pick<DiffusionModel, 'manifest'>,
  width: number,
  height: number,
  options: { tile?: number | undefined; overlap?: number | undefined } = {},
): TilePlan {
  const spec = model.manifest.restoration;
  const multiple = model.manifest.resolution.multipleOf;
  const minTile = options.tile ?? spec?.tile ?? DEFAULT_TILE;
  const overlap = options.overlap ?? spec?.overlap ?? DEFAULT_OVERLAP;
  if (minTile % multiple !== 0 || minTile < multiple) {
    throw new RetraceError('BAD_INPUT', `tile ${minTile} must be a multiple of ${multiple}`);
  }
  if (overlap >= minTile) {
    throw new RetraceError(
      'BAD_INPUT',
      `overlap ${overlap} must be smaller than the tile ${minTile}`,
    );
  }
  const w = Math.ceil(width / multiple) * multiple;
  const h = Math.ceil(height / multiple) * multiple;
  if (options.tile === undefined) {
    return chooseTiles(w, h, {
      multiple,
      overlap,
      minTile,
      maxTilePixels: MAX_TILE_PIXELS,
      memory: RESTORE_MEMORY,
    });
  }
  const side = { width: options.tile, height: options.tile, overlap, multiple };
  return describeTiles(w, h, side, 'asked');
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
  const plan = restoreTilePlan(model, image.width, image.height, options);
  const { overlap } = plan;
  const deterministic = options.deterministic ?? spec?.deterministic ?? false;
  const width = Math.ceil(image.width / multiple) * multiple;
  const height = Math.ceil(image.height / multiple) * multiple;
  const padded = reflectPad(image, width, height);
  const tiles = planTiles(width, height, {
    tile: plan.tileWidth,
    tileHeight: plan.tileHeight,
    overlap,
    multiple,
  });
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
    plan,
    seconds: secondsSince(started),
  };
}
