// A photo as an edit treats it (ALGORITHMS.md §5): the file's own samples, oriented, at full
// size and bit depth, with no colour conversion, so that every pixel the edit does not touch is
// written back exactly as it was read; its ICC profile goes back into the output. The network
// sees a working-size copy; only the change it makes, upsampled and masked, reaches the photo:
// O = S + M·up(Δ). Masks (the user's image, or an automatic one) live here too, at full size.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { deflateSync } from 'node:zlib';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { writeFileAtomic } from '../formats/atomic.js';
import { RetraceError } from '../errors.js';
import {
  buildXmp,
  DEFAULT_MAX_PIXELS,
  insertPngChunks,
  pngChunk,
  pngTextChunks,
  type ImageMetadata,
  type OutputFormat,
} from './io.js';

export interface Photo {
  file: string;
  /** Displayed size: EXIF orientation applied. */
  width: number;
  height: number;
  /** 3 (RGB) or 4 (RGBA) interleaved samples per pixel. */
  channels: 3 | 4;
  depth: 8 | 16;
  /** The file's own values, oriented, row-major, interleaved. */
  samples: Uint8Array | Uint16Array;
  /** The embedded ICC profile, written back into the output. */
  icc?: Buffer;
  format: string;
  sha256: string;
}

const EDITABLE_FORMATS = new Set(['png', 'jpeg', 'webp', 'tiff', 'avif', 'heif']);

function badImage(file: string, err: unknown): RetraceError {
  const reason = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
  return new RetraceError('BAD_INPUT', `${file}: not a readable image (${reason})`, {
    cause: err,
  });
}

async function header(file: string, what: string): Promise<Metadata> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new RetraceError(
      'BAD_INPUT',
      code === 'ENOENT' ? `${file}: no such ${what}` : `${file}: cannot read (${code ?? 'error'})`,
      { cause: err },
    );
  }
  if (bytes.length === 0) throw new RetraceError('BAD_INPUT', `${file}: empty file`);
  try {
    return await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw badImage(file, err);
  }
}

/**
 * Reads a photo's samples for editing. RGB files keep their values and profile exactly; grey
 * files become three equal channels; CMYK is converted to sRGB through its profile (and then has
 * none of its own to keep).
 */
export async function readPhoto(
  file: string,
  options: { maxPixels?: number } = {},
): Promise<Photo> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const meta = await header(file, 'photo');
  if (!EDITABLE_FORMATS.has(meta.format ?? '')) {
    throw new RetraceError(
      'BAD_INPUT',
      `${file}: unsupported image format '${meta.format}' (use PNG, JPEG, WebP, TIFF or AVIF)`,
    );
  }
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (width * height > maxPixels) {
    throw new RetraceError(
      'TOO_LARGE',
      `${file}: ${width}×${height} pixels is over the limit of ${maxPixels} pixels`,
    );
  }
  const deep = meta.depth !== 'uchar' && meta.depth !== 'char';
  const cmyk = meta.space === 'cmyk';
  const keepIcc = !cmyk && meta.icc !== undefined;
  let data: Buffer;
  let info: OutputInfo;
  try {
    ({ data, info } = await sharp(file, {
      autoOrient: true,
      ignoreIcc: !cmyk,
      failOn: 'warning',
      pages: 1,
      limitInputPixels: maxPixels,
    })
      .toColourspace(deep ? 'rgb16' : 'srgb')
      .raw(deep ? { depth: 'ushort' } : {})
      .toBuffer({ resolveWithObject: true }));
  } catch (err) {
    throw badImage(file, err);
  }
  if (info.channels !== 3 && info.channels !== 4) {
    throw new RetraceError('BAD_INPUT', `${file}: ${info.channels} channels after decoding`);
  }
  const samples = deep
    ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2)
    : new Uint8Array(data.buffer, data.byteOffset, data.length);
  return {
    file,
    width: info.width,
    height: info.height,
    channels: info.channels,
    depth: deep ? 16 : 8,
    samples,
    ...(keepIcc && meta.icc ? { icc: meta.icc } : {}),
    format: meta.format ?? 'unknown',
    sha256: createHash('sha256')
      .update(await readFile(file))
      .digest('hex'),
  };
}

function rawInput(photo: Pick<Photo, 'width' | 'height' | 'channels'>) {
  return { raw: { width: photo.width, height: photo.height, channels: photo.channels } } as const;
}

/** The photo at the working size as the networks see it: [3, h, w] in [−1, 1] (alpha dropped). */
export async function workingCopy(
  photo: Photo,
  width: number,
  height: number,
): Promise<{ chw: Float32Array; width: number; height: number }> {
  let pipeline = sharp(photo.samples, rawInput(photo));
  if (photo.channels === 4) pipeline = pipeline.removeAlpha();
  const { data, info } = await pipeline
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .toColourspace('rgb16')
    .raw({ depth: 'ushort' })
    .toBuffer({ resolveWithObject: true });
  const u16 = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
  const n = width * height;
  const chw = new Float32Array(3 * n);
  const channels = info.channels;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++)
      chw[c * n + i] = ((u16[i * channels + c] as number) / 65535) * 2 - 1;
  }
  return { chw, width, height };
}

export interface PixelMask {
  width: number;
  height: number;
  /** 0 = keep exactly, 255 = take the edit fully; feathered in between. */
  values: Uint8Array;
  /** Share of pixels the thresholded mask covers, before feathering. */
  coverage: number;
  warnings: string[];
}

/** The feather (pixels) used when none is given: 0.5 % of the long side, at least 2. */
export function defaultFeather(width: number, height: number): number {
  return Math.max(2, Math.round(Math.max(width, height) / 200));
}

/**
 * A binary mask (0/255, `width`×`height`) feathered by a Gaussian whose transition spans about
 * `feather` pixels each way; far from the edge values stay exactly 0 and 255.
 */
export async function featherMask(
  binary: Uint8Array,
  width: number,
  height: number,
  feather: number,
): Promise<Uint8Array> {
  if (feather <= 0) return binary;
  const { data } = await sharp(binary, { raw: { width, height, channels: 1 } })
    .blur(Math.max(0.3, feather / 2))
    .extractChannel(0)
    .raw()
    .toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

/**
 * Reads the user's mask for a `width`×`height` photo: white (or opaque) = edit. Its alpha is used
 * when it has a transparent pixel, its grey level otherwise; it is oriented, scaled to the photo
 * (with a warning when its aspect differs by more than 1 %), thresholded at half and feathered.
 * A mask that covers nothing is an error naming the file.
 */
export async function readMask(
  file: string,
  width: number,
  height: number,
  options: { feather?: number } = {},
): Promise<PixelMask> {
  const meta = await header(file, 'mask');
  const warnings: string[] = [];
  const mw = meta.autoOrient?.width ?? meta.width;
  const mh = meta.autoOrient?.height ?? meta.height;
  const ratio = mw / mh / (width / height);
  if (Math.abs(ratio - 1) > 0.01) {
    warnings.push(
      `${file}: the mask is ${mw}×${mh} and the photo ${width}×${height}; the mask was stretched to the photo`,
    );
  }
  let binary: Uint8Array;
  try {
    let useAlpha = false;
    if (meta.hasAlpha) {
      const stats = await sharp(file, { autoOrient: true }).stats();
      const alpha = stats.channels[stats.channels.length - 1];
      useAlpha = (alpha?.min ?? 255) < 255;
    }
    const base = sharp(file, { autoOrient: true, failOn: 'warning', pages: 1 });
    const grey = useAlpha ? base.extractChannel('alpha') : base.flatten().toColourspace('b-w');
    const { data } = await grey
      .resize(width, height, { fit: 'fill', kernel: 'linear' })
      .threshold(128, { greyscale: true })
      .extractChannel(0)
      .raw()
      .toBuffer({ resolveWithObject: true });
    binary = new Uint8Array(data.buffer, data.byteOffset, data.length);
  } catch (err) {
    throw badImage(file, err);
  }
  let covered = 0;
  for (let i = 0; i < binary.length; i++) if (binary[i] !== 0) covered += 1;
  if (covered === 0) {
    throw new RetraceError(
      'BAD_INPUT',
      `${file}: the mask covers nothing (white or opaque marks what to edit; this one is all black or transparent)`,
    );
  }
  const feather = options.feather ?? defaultFeather(width, height);
  return {
    width,
    height,
    values: await featherMask(binary, width, height, feather),
    coverage: covered / binary.length,
    warnings,
  };
}

/**
 * A mask found on the latent grid (1 = edit) carried to the photo: scaled up (bilinear),
 * thresholded at half, feathered like a user's mask.
 */
export async function maskFromGrid(
  grid: Uint8Array,
  gw: number,
  gh: number,
  width: number,
  height: number,
  options: { feather?: number } = {},
): Promise<PixelMask> {
  const cells = Uint8Array.from(grid, (v) => (v ? 255 : 0));
  const { data } = await sharp(cells, { raw: { width: gw, height: gh, channels: 1 } })
    .resize(width, height, { fit: 'fill', kernel: 'linear' })
    .threshold(128, { greyscale: true })
    .extractChannel(0)
    .raw()
    .toBuffer({ resolveWithObject: true });
  const binary = new Uint8Array(data.buffer, data.byteOffset, data.length);
  let covered = 0;
  for (let i = 0; i < binary.length; i++) if (binary[i] !== 0) covered += 1;
  const feather = options.feather ?? defaultFeather(width, height);
  return {
    width,
    height,
    values: await featherMask(binary, width, height, feather),
    coverage: covered / binary.length,
    warnings: [],
  };
}

/** Writes a mask as an 8-bit grey PNG (white = edit), atomically. */
export async function writeMask(file: string, mask: PixelMask): Promise<void> {
  const png = await sharp(mask.values, {
    raw: { width: mask.width, height: mask.height, channels: 1 },
  })
    .toColourspace('b-w')
    .png({ compressionLevel: 6 })
    .toBuffer();
  await writeFileAtomic(file, png);
}

/**
 * The mask on a coarser grid (the latent's `gw`×`gh`) by area averaging, in [0, 1]: each cell is
 * the mean of the pixels it covers, fractional edges weighted. Separable, O(width·height).
 */
export function areaDownsample(
  values: Uint8Array,
  width: number,
  height: number,
  gw: number,
  gh: number,
): Float64Array {
  // Columns first: each row of pixels → gw cells.
  const rows = new Float64Array(height * gw);
  const colWeights = boxWeights(width, gw);
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (const { cell, index, weight } of colWeights) {
      rows[y * gw + cell] =
        (rows[y * gw + cell] as number) + weight * (values[row + index] as number);
    }
  }
  const out = new Float64Array(gh * gw);
  for (const { cell, index, weight } of boxWeights(height, gh)) {
    for (let x = 0; x < gw; x++) {
      out[cell * gw + x] =
        (out[cell * gw + x] as number) + weight * (rows[index * gw + x] as number);
    }
  }
  const scale = ((gw / width) * (gh / height)) / 255;
  for (let i = 0; i < out.length; i++) out[i] = Math.min(1, (out[i] as number) * scale);
  return out;
}

/** For n samples into m cells: every (cell, sample, overlap length in samples) pair. */
function boxWeights(n: number, m: number): { cell: number; index: number; weight: number }[] {
  const out: { cell: number; index: number; weight: number }[] = [];
  const step = n / m;
  for (let cell = 0; cell < m; cell++) {
    const start = cell * step;
    const end = (cell + 1) * step;
    for (let index = Math.floor(start); index < Math.min(n, Math.ceil(end)); index++) {
      const weight = Math.min(end, index + 1) - Math.max(start, index);
      if (weight > 0) out.push({ cell, index, weight });
    }
  }
  return out;
}

const ZERO_CHANGE = 32767;

/**
 * O = S + M·up(Δ): `delta` ([3, h, w], in the networks' [−1, 1] units) is upsampled to the photo
 * (Lanczos), weighted by the mask (absent: 1 everywhere) and added to the photo's samples,
 * rounded and clamped to its bit depth. Where the mask is 0 the sample is copied, so it is the
 * source's exactly; alpha is always copied. A zero Δ returns a copy of the source.
 */
export async function compositeChange(
  photo: Photo,
  delta: { chw: Float32Array; width: number; height: number },
  mask?: Uint8Array,
): Promise<Uint8Array | Uint16Array> {
  const out = photo.samples.slice();
  let any = false;
  for (let i = 0; i < delta.chw.length; i++) {
    if (delta.chw[i] !== 0) {
      any = true;
      break;
    }
  }
  if (!any) return out;
  const { width: dw, height: dh } = delta;
  const dn = dw * dh;
  // libvips resizes this through 16-bit samples: Δ/2 ∈ [−1, 1] is carried as 32767·(1 + Δ/2), so
  // zero is a whole sample (no bias) and a step is 3·10⁻⁵ of full scale (under 1 % of an 8-bit
  // level, about one level of a 16-bit photo).
  const hwc = new Float32Array(3 * dn);
  for (let i = 0; i < dn; i++) {
    for (let c = 0; c < 3; c++) {
      const d = Math.max(-2, Math.min(2, delta.chw[c * dn + i] as number));
      hwc[3 * i + c] = ZERO_CHANGE * (1 + d / 2);
    }
  }
  const { data } = await sharp(hwc, { raw: { width: dw, height: dh, channels: 3 } })
    .resize(photo.width, photo.height, { fit: 'fill', kernel: 'lanczos3' })
    .toColourspace('rgb16')
    .raw({ depth: 'ushort' })
    .toBuffer({ resolveWithObject: true });
  const up16 = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
  const max = photo.depth === 16 ? 65535 : 255;
  const channels = photo.channels;
  const n = photo.width * photo.height;
  const s = photo.samples;
  for (let p = 0; p < n; p++) {
    const m = mask ? (mask[p] as number) : 255;
    if (m === 0) continue;
    const w = (m / 255) * max;
    const o = p * channels;
    for (let c = 0; c < 3; c++) {
      const change = (up16[3 * p + c] as number) / ZERO_CHANGE - 1; // back to Δ/2, [0, 1] units
      const v = Math.round((s[o + c] as number) + w * change);
      out[o + c] = v < 0 ? 0 : v > max ? max : v;
    }
  }
  return out;
}

/** An `iCCP` chunk carrying `icc` (zlib, as the PNG specification requires). */
function iccChunk(icc: Buffer): Buffer {
  return pngChunk(
    'iCCP',
    Buffer.concat([Buffer.from('ICC profile\0\0', 'latin1'), deflateSync(icc)]),
  );
}

/**
 * Writes edited samples with the photo's size, depth and ICC profile, atomically. PNG (8 or 16
 * bit) and TIFF keep every sample exactly; JPEG, WebP and AVIF re-encode (lossy), converted to
 * sRGB through the profile.
 */
export async function writePhoto(
  file: string,
  photo: Pick<Photo, 'width' | 'height' | 'channels' | 'depth' | 'icc'>,
  samples: Uint8Array | Uint16Array,
  options: { format: OutputFormat; metadata?: ImageMetadata },
): Promise<void> {
  const { format, metadata } = options;
  let png: Buffer;
  try {
    png = await sharp(samples, rawInput(photo))
      .toColourspace(photo.depth === 16 ? 'rgb16' : 'srgb')
      .png({ compressionLevel: 6 })
      .toBuffer();
  } catch (err) {
    throw new RetraceError('RUNTIME', `${file}: cannot encode the result (${String(err)})`, {
      cause: err,
    });
  }
  const chunks = [...(photo.icc ? [iccChunk(photo.icc)] : [])];
  if (format === 'png') {
    if (metadata) chunks.push(...pngTextChunks(metadata));
    await writeFileAtomic(file, insertPngChunks(png, chunks, file));
    return;
  }
  const tagged = chunks.length ? insertPngChunks(png, chunks, file) : png;
  let pipeline = sharp(tagged);
  if (format === 'tiff') pipeline = pipeline.keepIccProfile();
  if (metadata) {
    pipeline = pipeline.withXmp(buildXmp(metadata));
    if (format !== 'tiff' && metadata.parameters !== undefined) {
      pipeline = pipeline.withExif({
        IFD0: { Software: 'Retrace' },
        IFD2: { UserComment: metadata.parameters },
      });
    }
  }
  switch (format) {
    case 'jpeg':
      pipeline = pipeline.jpeg({ quality: 92, chromaSubsampling: '4:4:4' });
      break;
    case 'webp':
      pipeline = pipeline.webp({ quality: 92 });
      break;
    case 'tiff':
      pipeline = pipeline.tiff({ compression: 'deflate', predictor: 'horizontal' });
      break;
    case 'avif':
      pipeline = pipeline.avif({ quality: 70 });
      break;
  }
  await writeFileAtomic(file, await pipeline.toBuffer());
}
