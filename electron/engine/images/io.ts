// Image files in and out of the engine. Any common photo (PNG, JPEG, WebP, TIFF, AVIF, GIF's first
// frame) decodes to one shape: planar float sRGB with EXIF orientation applied and alpha kept
// aside, so pipelines never see grey, CMYK, palette or 16-bit variants. Writes are atomic and
// carry the job's parameters (PNG text chunks; XMP and EXIF elsewhere), and the small
// conversions pipelines need (model range, resize, preview) live here too.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { crc32, inflateSync } from 'node:zlib';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { writeFileAtomic } from '../formats/atomic.js';
import { RetraceError } from '../errors.js';

export interface ImageMeta {
  /** Decoder that read the file: png, jpeg, webp, tiff, avif, gif (or `model` for generated data). */
  format: string;
  bitDepth: 8 | 16;
  hadAlpha: boolean;
  /** The file's own colour space as libvips names it (srgb, b-w, cmyk, rgb16, grey16, …); the data is always sRGB. */
  colourSpace: string;
  orientationApplied: boolean;
}

export interface RgbImage {
  width: number;
  height: number;
  /** Planar CHW, 3 channels, values in [0, 1]. */
  data: Float32Array;
  /** H·W opacity in [0, 1], present when the source had an alpha channel. */
  alpha?: Float32Array;
  meta: ImageMeta;
}

export interface ImageMetadata {
  /** The job's parameters as Retrace reads them back (JSON). */
  retrace: Record<string, unknown>;
  /** The same in the A1111 `parameters` style other tools read. */
  parameters?: string;
}

export type OutputFormat = 'png' | 'jpeg' | 'webp' | 'tiff' | 'avif';

export interface WriteImageOptions {
  /** Default: from the file's extension. */
  format?: OutputFormat;
  /** 1–100 for JPEG, WebP and AVIF; ignored by the lossless formats. */
  quality?: number;
  /** 16 is for PNG and TIFF only. Default: the image's own depth where the format allows it, else 8. */
  bitDepth?: 8 | 16;
  metadata?: ImageMetadata;
}

/** Largest photo read unless the caller says otherwise: 100 MP is ~1.2 GB of float planes. */
export const DEFAULT_MAX_PIXELS = 100_000_000;

const READABLE_FORMATS = new Set(['png', 'jpeg', 'webp', 'tiff', 'avif', 'gif']);
const DEFAULT_QUALITY: Record<OutputFormat, number> = {
  png: 100,
  jpeg: 92,
  webp: 92,
  tiff: 100,
  avif: 70,
};
const EXTENSION_FORMATS: Record<string, OutputFormat> = {
  '.png': 'png',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.webp': 'webp',
  '.tif': 'tiff',
  '.tiff': 'tiff',
  '.avif': 'avif',
};

// ---------------------------------------------------------------------------------------------
// Reading

/** Decodes a photo into planar float sRGB; see the module comment for what is normalised. */
export async function readImage(
  file: string,
  options: { maxPixels?: number } = {},
): Promise<RgbImage> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isSafeInteger(maxPixels) || maxPixels < 1) {
    throw new RetraceError('BAD_INPUT', `maxPixels must be a positive integer, got ${maxPixels}`);
  }
  await requireNonEmptyFile(file);

  // The header alone tells the size: refuse huge images before any pixel is decoded.
  let header: Metadata;
  try {
    header = await sharp(file, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw badFile(file, err);
  }
  const format = formatName(header);
  if (!READABLE_FORMATS.has(format)) {
    throw new RetraceError(
      'BAD_FILE',
      `${file}: unsupported image format '${format}' (use PNG, JPEG, WebP, TIFF, AVIF or GIF)`,
    );
  }
  // Displayed size (sides swapped for 90° orientations); older libvips builds may omit it.
  const shownWidth = header.autoOrient?.width ?? header.width;
  const shownHeight = header.autoOrient?.height ?? header.height;
  if (shownWidth * shownHeight > maxPixels) {
    throw new RetraceError(
      'TOO_LARGE',
      `${file}: ${shownWidth}×${shownHeight} pixels is over the limit of ${maxPixels} pixels`,
    );
  }

  // Anything deeper than 8 bits decodes through 16-bit sRGB so the extra precision survives.
  const sixteen = header.depth !== 'uchar' && header.depth !== 'char';
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await sharp(file, {
      limitInputPixels: maxPixels,
      autoOrient: true,
      failOn: 'warning',
      pages: 1,
      page: 0,
    })
      .toColourspace(sixteen ? 'rgb16' : 'srgb')
      .raw(sixteen ? { depth: 'ushort' } : {})
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw badFile(file, err);
  }
  const { info } = decoded;
  const samples: ArrayLike<number> = sixteen ? ushortView(decoded.data) : decoded.data;
  const planes = planarise(samples, info.width, info.height, info.channels, sixteen ? 65535 : 255);
  return {
    width: info.width,
    height: info.height,
    data: planes.data,
    ...(planes.alpha ? { alpha: planes.alpha } : {}),
    meta: {
      format,
      bitDepth: sixteen ? 16 : 8,
      hadAlpha: planes.alpha !== undefined,
      colourSpace: header.space,
      orientationApplied: header.orientation !== undefined && header.orientation !== 1,
    },
  };
}

async function requireNonEmptyFile(file: string): Promise<void> {
  let size: number;
  try {
    const s = await stat(file);
    if (!s.isFile()) throw new RetraceError('BAD_FILE', `${file}: not a file`);
    size = s.size;
  } catch (err) {
    if (err instanceof RetraceError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new RetraceError(
      'BAD_FILE',
      code === 'ENOENT' ? `${file}: file not found` : `${file}: cannot read (${code ?? 'error'})`,
      { cause: err },
    );
  }
  if (size === 0) throw new RetraceError('BAD_FILE', `${file}: empty file`);
}

function badFile(file: string, err: unknown): RetraceError {
  const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
  return new RetraceError('BAD_FILE', `${file}: not a readable image (${reason})`, { cause: err });
}

/** 16-bit samples of a raw buffer (copied only in the rare case it is not 2-byte aligned). */
function ushortView(buffer: Buffer): Uint16Array {
  if (buffer.byteOffset % 2 === 0) {
    return new Uint16Array(buffer.buffer, buffer.byteOffset, buffer.length / 2);
  }
  return new Uint16Array(Uint8Array.from(buffer).buffer);
}

function formatName(header: Metadata): string {
  // libvips reports AVIF as HEIF with AV1 compression.
  if (header.format === 'heif') return header.compression === 'av1' ? 'avif' : 'heic';
  return header.format;
}

/** Interleaved samples (1–4 channels) → planar RGB in [0, 1] plus alpha when there is one. */
function planarise(
  samples: ArrayLike<number>,
  width: number,
  height: number,
  channels: number,
  max: number,
): { data: Float32Array; alpha?: Float32Array } {
  const n = width * height;
  const data = new Float32Array(3 * n);
  const hasAlpha = channels === 2 || channels === 4;
  const colours = hasAlpha ? channels - 1 : channels;
  const alpha = hasAlpha ? new Float32Array(n) : undefined;
  const scale = 1 / max;
  for (let i = 0, s = 0; i < n; i++, s += channels) {
    for (let c = 0; c < 3; c++) {
      data[c * n + i] = (samples[s + (colours === 1 ? 0 : c)] as number) * scale;
    }
    if (alpha) alpha[i] = (samples[s + colours] as number) * scale;
  }
  return alpha ? { data, alpha } : { data };
}

// ---------------------------------------------------------------------------------------------
// Writing

/** The output format a file name asks for. */
export function formatFromPath(file: string): OutputFormat {
  const format = EXTENSION_FORMATS[path.extname(file).toLowerCase()];
  if (!format) {
    throw new RetraceError(
      'BAD_INPUT',
      `${file}: unsupported output type (use .png, .jpg, .webp, .tif or .avif)`,
    );
  }
  return format;
}

/** Encodes and writes atomically: a hidden partial file beside the target, then a rename. */
export async function writeImage(
  file: string,
  image: RgbImage,
  options: WriteImageOptions = {},
): Promise<void> {
  const format = options.format ?? formatFromPath(file);
  validateImage(image, file);
  const quality = options.quality ?? DEFAULT_QUALITY[format];
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new RetraceError(
      'BAD_INPUT',
      `${file}: quality must be an integer 1–100, got ${quality}`,
    );
  }
  const deep = format === 'png' || format === 'tiff';
  if (options.bitDepth === 16 && !deep) {
    throw new RetraceError('BAD_INPUT', `${file}: 16-bit output needs PNG or TIFF, not ${format}`);
  }
  const bitDepth = options.bitDepth ?? (deep ? image.meta.bitDepth : 8);
  // JPEG has no alpha: the colour under transparent pixels is kept as it is.
  const alpha = format === 'jpeg' ? undefined : image.alpha;
  const raw = interleave(
    image.data,
    alpha,
    image.width,
    image.height,
    bitDepth === 16 ? 65535 : 255,
  );

  let pipeline = sharp(raw, {
    raw: { width: image.width, height: image.height, channels: alpha ? 4 : 3 },
  }).toColourspace(bitDepth === 16 ? 'rgb16' : 'srgb');
  const meta = options.metadata;
  if (meta && format !== 'png') {
    pipeline = pipeline.withXmp(buildXmp(meta));
    // TIFF output cannot carry EXIF; elsewhere UserComment is where A1111-style readers look.
    if (format !== 'tiff' && meta.parameters !== undefined) {
      pipeline = pipeline.withExif({
        IFD0: { Software: 'Retrace' },
        IFD2: { UserComment: meta.parameters },
      });
    }
  }
  switch (format) {
    case 'png':
      pipeline = pipeline.png({ compressionLevel: 6 });
      break;
    case 'jpeg':
      pipeline = pipeline.jpeg({ quality, chromaSubsampling: quality >= 90 ? '4:4:4' : '4:2:0' });
      break;
    case 'webp':
      pipeline = pipeline.webp({ quality });
      break;
    case 'tiff':
      pipeline = pipeline.tiff({ compression: 'deflate', predictor: 'horizontal' });
      break;
    case 'avif':
      pipeline = pipeline.avif({ quality });
      break;
  }
  let encoded: Buffer;
  try {
    encoded = await pipeline.toBuffer();
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new RetraceError('BAD_INPUT', `${file}: cannot encode as ${format} (${reason})`, {
      cause: err,
    });
  }
  if (format === 'png' && meta) encoded = insertPngChunks(encoded, pngTextChunks(meta), file);
  await writeFileAtomic(file, encoded);
}

export { writeFileAtomic };

function validateImage(image: RgbImage, name: string): void {
  const { width, height } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RetraceError('BAD_INPUT', `${name}: image size ${width}×${height} is not valid`);
  }
  if (image.data.length !== 3 * width * height) {
    throw new RetraceError(
      'BAD_INPUT',
      `${name}: image data has ${image.data.length} values, expected 3×${width}×${height}`,
    );
  }
  if (image.alpha && image.alpha.length !== width * height) {
    throw new RetraceError(
      'BAD_INPUT',
      `${name}: alpha has ${image.alpha.length} values, expected ${width}×${height}`,
    );
  }
}

/** Planar [0, 1] floats → interleaved integers (8- or 16-bit), clamped and rounded; NaN → 0. */
function interleave(
  data: Float32Array,
  alpha: Float32Array | undefined,
  width: number,
  height: number,
  max: 255 | 65535,
): Uint8Array | Uint16Array {
  const n = width * height;
  const channels = alpha ? 4 : 3;
  const out = max === 255 ? new Uint8Array(n * channels) : new Uint16Array(n * channels);
  const quantise = (v: number) => Math.round((v > 0 ? (v < 1 ? v : 1) : 0) * max);
  for (let i = 0, o = 0; i < n; i++, o += channels) {
    out[o] = quantise(data[i] as number);
    out[o + 1] = quantise(data[n + i] as number);
    out[o + 2] = quantise(data[2 * n + i] as number);
    if (alpha) out[o + 3] = quantise(alpha[i] as number);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parameters embedded in files

export interface A1111Parameters {
  prompt: string;
  negativePrompt?: string | undefined;
  steps: number;
  sampler: string;
  guidance?: number | undefined;
  seed: number;
  width: number;
  height: number;
  model: string;
  /** Further `Key: value` pairs appended in order. */
  extra?: Record<string, string | number> | undefined;
}

/**
 * The A1111 `parameters` text: the prompt, an optional `Negative prompt:` line, then one line of
 * `Key: value` pairs ("Steps: 20, Sampler: DDIM, CFG scale: 3, Seed: 1, Size: 64x64, Model: …").
 */
export function formatA1111(params: A1111Parameters): string {
  const pairs: [string, string | number][] = [
    ['Steps', params.steps],
    ['Sampler', params.sampler],
  ];
  if (params.guidance !== undefined) pairs.push(['CFG scale', params.guidance]);
  pairs.push(['Seed', params.seed], ['Size', `${params.width}x${params.height}`]);
  pairs.push(['Model', params.model]);
  for (const [key, value] of Object.entries(params.extra ?? {})) pairs.push([key, value]);
  const line = pairs.map(([k, v]) => `${k}: ${quoteA1111(String(v))}`).join(', ');
  const negative = params.negativePrompt ? `\nNegative prompt: ${params.negativePrompt}` : '';
  return `${params.prompt}${negative}\n${line}`;
}

/** A1111 JSON-quotes a value that would break its `Key: value, …` line. */
function quoteA1111(value: string): string {
  return /[,:\n"]/.test(value) ? JSON.stringify(value) : value;
}

const XMP_NS = 'https://retrace.invalid/xmp/1.0/';

export function buildXmp(meta: ImageMetadata): string {
  const fields = [`<retrace:json>${xmlEscape(asciiJson(meta.retrace))}</retrace:json>`];
  if (meta.parameters !== undefined) {
    const text = xmlEscape(meta.parameters);
    fields.push(
      `<retrace:parameters>${text}</retrace:parameters>`,
      `<exif:UserComment><rdf:Alt><rdf:li xml:lang="x-default">${text}</rdf:li></rdf:Alt></exif:UserComment>`,
    );
  }
  return (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>' +
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">' +
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' +
    `<rdf:Description rdf:about="" xmlns:retrace="${XMP_NS}" xmlns:exif="http://ns.adobe.com/exif/1.0/">` +
    fields.join('') +
    '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
  );
}

/** JSON with every non-ASCII character escaped, so it fits a Latin-1 `tEXt` chunk unchanged. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

function xmlEscape(text: string): string {
  return (
    text
      // Control characters other than tab, newline and CR are not allowed in XML 1.0.
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/\r/g, '&#13;')
  );
}

function xmlUnescape(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    if (entity.startsWith('#x')) return String.fromCodePoint(parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(parseInt(entity.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[entity] ?? '';
  });
}

/** One XMP property, written as an element (ours) or an attribute (after another tool rewrote it). */
function xmpProperty(xmp: string, name: string): string | undefined {
  const element = new RegExp(`<retrace:${name}>([\\s\\S]*?)</retrace:${name}>`).exec(xmp);
  if (element?.[1] !== undefined) return xmlUnescape(element[1]);
  const attribute = new RegExp(`retrace:${name}="([^"]*)"`).exec(xmp);
  return attribute?.[1] !== undefined ? xmlUnescape(attribute[1]) : undefined;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function pngChunk(type: string, data: Buffer): Buffer {
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write(type, 4, 'latin1');
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return chunk;
}

/** `tEXt` when the text is Latin-1 (what every reader handles), `iTXt` (UTF-8) otherwise. */
function pngTextChunk(keyword: string, text: string): Buffer {
  // eslint-disable-next-line no-control-regex
  const latin1 = !/[^\u0001-\u00ff]/.test(text);
  if (latin1) return pngChunk('tEXt', Buffer.from(`${keyword}\0${text}`, 'latin1'));
  // keyword, NUL, compression flag 0, method 0, empty language tag, empty translated keyword.
  const head = Buffer.from(`${keyword}\0\0\0\0\0`, 'latin1');
  return pngChunk('iTXt', Buffer.concat([head, Buffer.from(text, 'utf8')]));
}

export function pngTextChunks(meta: ImageMetadata): Buffer[] {
  const chunks = [pngTextChunk('retrace', asciiJson(meta.retrace))];
  if (meta.parameters !== undefined) chunks.push(pngTextChunk('parameters', meta.parameters));
  return chunks;
}

/** Inserts chunks right after IHDR, so readers that stop at the first IDAT still see them. */
export function insertPngChunks(png: Buffer, chunks: Buffer[], name: string): Buffer {
  const ihdrEnd = 8 + 12 + 13;
  if (!png.subarray(0, 8).equals(PNG_SIGNATURE) || png.toString('latin1', 12, 16) !== 'IHDR') {
    throw new RetraceError('RUNTIME', `${name}: the PNG encoder produced no IHDR chunk`);
  }
  return Buffer.concat([png.subarray(0, ihdrEnd), ...chunks, png.subarray(ihdrEnd)]);
}

/** Text chunks of a PNG file (tEXt, zTXt, iTXt) with valid CRCs, read without decoding pixels. */
async function readPngText(file: string): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(8);
    let offset = 8;
    while (offset + 12 <= size) {
      await handle.read(head, 0, 8, offset);
      const length = head.readUInt32BE(0);
      const type = head.toString('latin1', 4, 8);
      if (type === 'IEND' || offset + 12 + length > size) break;
      if (type === 'tEXt' || type === 'zTXt' || type === 'iTXt') {
        const body = Buffer.alloc(length + 4);
        await handle.read(body, 0, length + 4, offset + 8);
        const data = body.subarray(0, length);
        const crc = crc32(data, crc32(head.subarray(4, 8)));
        if (crc === body.readUInt32BE(length)) {
          const text = decodeTextChunk(type, data);
          if (text && !texts.has(text.keyword)) texts.set(text.keyword, text.text);
        }
      }
      offset += 12 + length;
    }
  } finally {
    await handle.close();
  }
  return texts;
}

function decodeTextChunk(
  type: string,
  data: Buffer,
): { keyword: string; text: string } | undefined {
  const nul = data.indexOf(0);
  if (nul < 1) return undefined;
  const keyword = data.toString('latin1', 0, nul);
  try {
    if (type === 'tEXt') return { keyword, text: data.toString('latin1', nul + 1) };
    if (type === 'zTXt')
      return { keyword, text: inflateSync(data.subarray(nul + 2)).toString('latin1') };
    // iTXt: compression flag, method, language tag\0, translated keyword\0, text.
    const compressed = data[nul + 1] === 1;
    const langEnd = data.indexOf(0, nul + 3);
    const transEnd = langEnd < 0 ? -1 : data.indexOf(0, langEnd + 1);
    if (transEnd < 0) return undefined;
    const body = data.subarray(transEnd + 1);
    return { keyword, text: (compressed ? inflateSync(body) : body).toString('utf8') };
  } catch {
    return undefined;
  }
}

/**
 * Reads back what `writeImage` embedded: PNG text chunks, or XMP in the other formats. A file
 * with only an A1111 `parameters` chunk (another tool's output) gives `{ retrace: {}, parameters }`;
 * a file with neither gives undefined.
 */
export async function readImageMetadata(file: string): Promise<ImageMetadata | undefined> {
  await requireNonEmptyFile(file);
  let json: string | undefined;
  let parameters: string | undefined;
  if (await isPng(file)) {
    try {
      const texts = await readPngText(file);
      json = texts.get('retrace');
      parameters = texts.get('parameters');
    } catch (err) {
      throw badFile(file, err);
    }
  } else {
    let header: Metadata;
    try {
      header = await sharp(file, { limitInputPixels: false }).metadata();
    } catch (err) {
      throw badFile(file, err);
    }
    const xmp = header.xmpAsString;
    if (xmp) {
      json = xmpProperty(xmp, 'json');
      parameters = xmpProperty(xmp, 'parameters');
    }
  }
  if (json === undefined && parameters === undefined) return undefined;
  let retrace: Record<string, unknown> = {};
  if (json !== undefined) {
    try {
      const parsed: unknown = JSON.parse(json);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error('not a JSON object');
      }
      retrace = parsed as Record<string, unknown>;
    } catch (err) {
      throw new RetraceError(
        'BAD_FILE',
        `${file}: embedded retrace metadata is not valid JSON (${(err as Error).message})`,
        { cause: err },
      );
    }
  }
  return parameters === undefined ? { retrace } : { retrace, parameters };
}

async function isPng(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await handle.read(head, 0, 8, 0);
    return bytesRead === 8 && head.equals(PNG_SIGNATURE);
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Conversions

/** [0, 1] → [−1, 1], the range the networks take; CHW order kept. */
export function toModelInput(image: RgbImage): Float64Array {
  const out = new Float64Array(image.data.length);
  for (let i = 0; i < out.length; i++) out[i] = 2 * (image.data[i] as number) - 1;
  return out;
}

/**
 * `toModelInput` as Float32, for callers that keep whole photos in float32 anyway: a 24 MP
 * photo then costs 288 MB here instead of a 576 MB Float64 intermediate. `out` may be
 * `image.data` itself (the image is then consumed: no second set of planes at all).
 */
export function toModelInput32(
  image: RgbImage,
  out: Float32Array = new Float32Array(image.data.length),
): Float32Array {
  for (let i = 0; i < out.length; i++) out[i] = 2 * (image.data[i] as number) - 1;
  return out;
}

/**
 * [−1, 1] network output → an image in [0, 1], clamped (NaN → 0), written into `out` (a new
 * array unless given: a restore reuses its photo's planes).
 */
export function fromModelOutput(
  data: Float64Array | Float32Array,
  width: number,
  height: number,
  alpha?: Float32Array,
  out: Float32Array = new Float32Array(data.length),
): RgbImage {
  for (let i = 0; i < out.length; i++) {
    const v = ((data[i] as number) + 1) / 2;
    out[i] = v > 0 ? (v < 1 ? v : 1) : 0;
  }
  const image: RgbImage = {
    width,
    height,
    data: out,
    ...(alpha ? { alpha } : {}),
    meta: {
      format: 'model',
      bitDepth: 8,
      hadAlpha: alpha !== undefined,
      colourSpace: 'srgb',
      orientationApplied: false,
    },
  };
  validateImage(image, 'model output');
  return image;
}

/**
 * Resizes with Lanczos-3 (both ways). libvips resamples the 0–65535 float input and hands back
 * 16-bit samples, so precision is ~1/65535; alpha is resized premultiplied, as it should be.
 * An image already at the target size is returned as it is.
 */
export async function resizeImage(
  image: RgbImage,
  width: number,
  height: number,
): Promise<RgbImage> {
  validateImage(image, 'resize input');
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RetraceError('BAD_INPUT', `resize: target size ${width}×${height} is not valid`);
  }
  if (width === image.width && height === image.height) return image;
  const channels = image.alpha ? 4 : 3;
  const n = image.width * image.height;
  const input = new Float32Array(n * channels);
  for (let i = 0, o = 0; i < n; i++, o += channels) {
    for (let c = 0; c < 3; c++) input[o + c] = clampUnit(image.data[c * n + i] as number) * 65535;
    if (image.alpha) input[o + 3] = clampUnit(image.alpha[i] as number) * 65535;
  }
  const { data, info } = await sharp(input, {
    raw: { width: image.width, height: image.height, channels },
  })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .toColourspace('rgb16')
    .raw({ depth: 'ushort' })
    .toBuffer({ resolveWithObject: true });
  const planes = planarise(ushortView(data), info.width, info.height, info.channels, 65535);
  return {
    width: info.width,
    height: info.height,
    data: planes.data,
    ...(planes.alpha ? { alpha: planes.alpha } : {}),
    meta: { ...image.meta },
  };
}

function clampUnit(v: number): number {
  return v > 0 ? (v < 1 ? v : 1) : 0;
}

/**
 * The size nearest to `width` × `height` whose sides are multiples of `multiple` (each at least
 * `multiple`), after scaling down to fit `maxSide` when given (aspect kept as well as rounding allows).
 */
export function fitToMultiple(
  width: number,
  height: number,
  multiple: number,
  options: { maxSide?: number } = {},
): { width: number; height: number } {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
    ['multiple', multiple],
  ] as const) {
    if (!Number.isFinite(v) || v <= 0 || (name === 'multiple' && !Number.isInteger(v))) {
      throw new RetraceError('BAD_INPUT', `fitToMultiple: ${name} must be positive, got ${v}`);
    }
  }
  const maxSide = options.maxSide;
  if (maxSide !== undefined && (!Number.isFinite(maxSide) || maxSide < multiple)) {
    throw new RetraceError(
      'BAD_INPUT',
      `fitToMultiple: maxSide must be at least the multiple ${multiple}, got ${maxSide}`,
    );
  }
  const scale = maxSide === undefined ? 1 : Math.min(1, maxSide / Math.max(width, height));
  const limit = maxSide === undefined ? Infinity : Math.floor(maxSide / multiple) * multiple;
  const round = (v: number) =>
    Math.min(limit, Math.max(multiple, Math.round((v * scale) / multiple) * multiple));
  return { width: round(width), height: round(height) };
}

/** The largest centred crop with the aspect ratio `aspectWidth : aspectHeight`. */
export function centreCropToAspect(
  image: RgbImage,
  aspectWidth: number,
  aspectHeight: number,
): RgbImage {
  validateImage(image, 'crop input');
  if (!(aspectWidth > 0) || !(aspectHeight > 0)) {
    throw new RetraceError('BAD_INPUT', `crop: aspect ${aspectWidth}:${aspectHeight} is not valid`);
  }
  const target = aspectWidth / aspectHeight;
  let width = image.width;
  let height = image.height;
  if (width / height > target) width = Math.max(1, Math.round(height * target));
  else height = Math.max(1, Math.round(width / target));
  if (width === image.width && height === image.height) return image;
  const left = Math.floor((image.width - width) / 2);
  const top = Math.floor((image.height - height) / 2);
  const copy = (plane: Float32Array, planes: number) => {
    const out = new Float32Array(planes * width * height);
    for (let c = 0; c < planes; c++) {
      for (let y = 0; y < height; y++) {
        const from = (c * image.height + top + y) * image.width + left;
        out.set(plane.subarray(from, from + width), (c * height + y) * width);
      }
    }
    return out;
  };
  return {
    width,
    height,
    data: copy(image.data, 3),
    ...(image.alpha ? { alpha: copy(image.alpha, 1) } : {}),
    meta: { ...image.meta },
  };
}

/** A small 8-bit PNG (longest side ≤ `maxSide`, never enlarged) for UI previews; alpha kept. */
export async function previewPng(image: RgbImage, maxSide: number): Promise<Buffer> {
  validateImage(image, 'preview input');
  if (!Number.isInteger(maxSide) || maxSide < 1) {
    throw new RetraceError(
      'BAD_INPUT',
      `preview: maxSide must be a positive integer, got ${maxSide}`,
    );
  }
  const raw = interleave(image.data, image.alpha, image.width, image.height, 255);
  return sharp(raw, {
    raw: { width: image.width, height: image.height, channels: image.alpha ? 4 : 3 },
  })
    .resize(maxSide, maxSide, { fit: 'inside', withoutEnlargement: true, kernel: 'lanczos3' })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/** Hex sha256 of a file's bytes, streamed. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new RetraceError(
      'BAD_FILE',
      code === 'ENOENT'
        ? `${file}: file not found`
        : `${file}: cannot read (${code ?? String(err)})`,
      { cause: err },
    );
  }
  return hash.digest('hex');
}
