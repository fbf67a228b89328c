// Image I/O: every format decodes to planar float sRGB (orientation, grey, 16-bit, CMYK, palette
// and alpha handled), writes are atomic, embedded parameters read back, conversions are exact
// where they should be. Test images are generated here with sharp into test/.tmp/.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RetraceError } from '../../../electron/engine/errors.js';
import {
  centreCropToAspect,
  fitToMultiple,
  formatA1111,
  fromModelOutput,
  previewPng,
  readImage,
  readImageMetadata,
  resizeImage,
  sha256File,
  toModelInput,
  toModelInput32,
  writeImage,
  type RgbImage,
} from '../../../electron/engine/images/io.js';
import { PARTIAL_MARKER } from '../../../electron/engine/jobs/batch.js';

// Records every rename (then does it) so the test can see the partial file's name.
const renames = vi.hoisted(() => [] as [string, string][]);
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    rename: async (from: string, to: string) => {
      renames.push([from, to]);
      return real.rename(from, to);
    },
  };
});

let dir: string;
beforeAll(async () => {
  await mkdir(path.resolve('test/.tmp'), { recursive: true });
  dir = await mkdtemp(path.resolve('test/.tmp/images-io-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const file = (name: string) => path.join(dir, name);

/** A smooth colourful image on the 8-bit grid (so 8-bit lossless formats round-trip exactly). */
function smoothImage(width: number, height: number, withAlpha = false): RgbImage {
  const n = width * height;
  const data = new Float32Array(3 * n);
  const alpha = withAlpha ? new Float32Array(n) : undefined;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      data[i] = Math.round((255 * x) / (width - 1)) / 255;
      data[n + i] = Math.round((255 * y) / (height - 1)) / 255;
      data[2 * n + i] = Math.round(127 + 100 * Math.sin((x + y) / 9)) / 255;
      if (alpha) alpha[i] = Math.round(255 * (0.2 + (0.8 * x) / (width - 1))) / 255;
    }
  }
  return {
    width,
    height,
    data,
    ...(alpha ? { alpha } : {}),
    meta: {
      format: 'test',
      bitDepth: 8,
      hadAlpha: withAlpha,
      colourSpace: 'srgb',
      orientationApplied: false,
    },
  };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs((a[i] as number) - (b[i] as number));
  return s / a.length;
}

/** Pixel (x, y) of a planar image as [r, g, b]. */
function pixel(image: RgbImage, x: number, y: number): number[] {
  const n = image.width * image.height;
  const i = y * image.width + x;
  return [0, 1, 2].map((c) => image.data[c * n + i] as number);
}

async function expectError(promise: Promise<unknown>, code: string, mentions: string) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RetraceError);
  expect((err as RetraceError).code).toBe(code);
  expect((err as RetraceError).message).toContain(mentions);
}

/** PNG chunks parsed by hand (no library), with their CRCs checked. */
function parsePngChunks(png: Buffer): { type: string; data: Buffer }[] {
  expect(png.subarray(0, 8).toString('latin1')).toBe('\x89PNG\r\n\x1a\n');
  const chunks: { type: string; data: Buffer }[] = [];
  for (let o = 8; o < png.length;) {
    const length = png.readUInt32BE(o);
    const type = png.toString('latin1', o + 4, o + 8);
    const data = png.subarray(o + 8, o + 8 + length);
    expect(png.readUInt32BE(o + 8 + length)).toBe(crc32(png.subarray(o + 4, o + 8 + length)));
    chunks.push({ type, data });
    o += 12 + length;
  }
  return chunks;
}

describe('round trips', () => {
  it.each([
    ['png', 0.5 / 255],
    ['tiff', 0.5 / 255],
  ] as const)('%s is lossless at 8 bits, alpha included', async (ext, tolerance) => {
    const source = smoothImage(40, 30, true);
    const target = file(`lossless.${ext}`);
    await writeImage(target, source);
    const back = await readImage(target);
    expect([back.width, back.height]).toEqual([40, 30]);
    expect(back.meta).toMatchObject({ format: ext, bitDepth: 8, hadAlpha: true });
    expect(maxAbsDiff(back.data, source.data)).toBeLessThanOrEqual(tolerance + 1e-7);
    expect(maxAbsDiff(back.alpha ?? [], source.alpha ?? [])).toBeLessThanOrEqual(tolerance + 1e-7);
  });

  it.each([
    ['jpg', 'jpeg', false],
    ['jpeg', 'jpeg', false],
    ['webp', 'webp', true],
    ['avif', 'avif', true],
  ] as const)('.%s (lossy) stays close to the source', async (ext, format, keepsAlpha) => {
    const source = smoothImage(64, 48, true);
    const target = file(`lossy.${ext}`);
    await writeImage(target, source, { quality: 95 });
    const back = await readImage(target);
    expect([back.width, back.height]).toEqual([64, 48]);
    expect(back.meta.format).toBe(format);
    expect(meanAbsDiff(back.data, source.data)).toBeLessThan(0.02);
    // JPEG cannot hold alpha; the others put it back.
    expect(back.meta.hadAlpha).toBe(keepsAlpha);
    if (keepsAlpha) expect(meanAbsDiff(back.alpha ?? [], source.alpha ?? [])).toBeLessThan(0.02);
  });

  it('reads the first frame of an animated GIF', async () => {
    const frame = (colour: string) =>
      sharp({ create: { width: 6, height: 4, channels: 3, background: colour } })
        .png()
        .toBuffer();
    const gif = await sharp([await frame('#ff0000'), await frame('#0000ff')], {
      join: { animated: true },
    })
      .gif()
      .toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(2);
    await writeFile(file('anim.gif'), gif);
    const image = await readImage(file('anim.gif'));
    expect([image.width, image.height, image.meta.format]).toEqual([6, 4, 'gif']);
    expect(pixel(image, 3, 2)).toEqual([1, 0, 0]);
  });
});

describe('decoding variants', () => {
  it('applies EXIF orientation 6 (rotate 90° clockwise)', async () => {
    // 32×16: left half red, right half blue. Rotated clockwise, the left half becomes the top.
    const raw = Buffer.alloc(32 * 16 * 3);
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 32; x++) raw.set(x < 16 ? [255, 0, 0] : [0, 0, 255], (y * 32 + x) * 3);
    }
    await sharp(raw, { raw: { width: 32, height: 16, channels: 3 } })
      .withMetadata({ orientation: 6 })
      .jpeg({ quality: 100 })
      .toFile(file('orient6.jpg'));
    expect((await sharp(file('orient6.jpg')).metadata()).orientation).toBe(6);
    const image = await readImage(file('orient6.jpg'));
    expect([image.width, image.height]).toEqual([16, 32]);
    expect(image.meta.orientationApplied).toBe(true);
    const top = pixel(image, 8, 4);
    const bottom = pixel(image, 8, 27);
    expect(top[0]).toBeGreaterThan(0.9);
    expect(top[2]).toBeLessThan(0.1);
    expect(bottom[2]).toBeGreaterThan(0.9);
    expect(bottom[0]).toBeLessThan(0.1);
  });

  it('converts greyscale (with alpha) to three equal channels', async () => {
    const raw = Buffer.from([0, 255, 51, 128, 204, 0, 255, 64]);
    await sharp(raw, { raw: { width: 2, height: 2, channels: 2 } })
      .toColourspace('b-w')
      .png()
      .toFile(file('grey.png'));
    expect((await sharp(file('grey.png')).metadata()).channels).toBe(2);
    const image = await readImage(file('grey.png'));
    expect(image.meta).toMatchObject({ colourSpace: 'b-w', hadAlpha: true, bitDepth: 8 });
    expect(pixel(image, 1, 0)).toEqual([0.2, 0.2, 0.2].map((v) => Math.fround(v)));
    expect(pixel(image, 0, 1)).toEqual([0.8, 0.8, 0.8].map((v) => Math.fround(v)));
    expect(Array.from(image.alpha ?? [])).toEqual([1, 128 / 255, 0, 64 / 255].map(Math.fround));
  });

  it('keeps 16-bit precision (PNG and TIFF), far better than 8-bit', async () => {
    // A ramp finer than the 8-bit grid.
    const width = 1024;
    const n = width * 2;
    const data = new Float32Array(3 * n);
    for (let i = 0; i < data.length; i++) data[i] = ((i % n) % width) / (width * 3) + 0.25;
    const source: RgbImage = { ...smoothImage(width, 2), data };
    for (const ext of ['png', 'tif']) {
      await writeImage(file(`deep.${ext}`), source, { bitDepth: 16 });
      expect((await sharp(file(`deep.${ext}`)).metadata()).depth).toBe('ushort');
      const deep = await readImage(file(`deep.${ext}`));
      expect(deep.meta.bitDepth).toBe(16);
      await writeImage(file(`shallow.${ext}`), source, { bitDepth: 8 });
      const shallow = await readImage(file(`shallow.${ext}`));
      expect(shallow.meta.bitDepth).toBe(8);
      const deepError = maxAbsDiff(deep.data, source.data);
      const shallowError = maxAbsDiff(shallow.data, source.data);
      expect(deepError).toBeLessThanOrEqual(0.5 / 65535 + 1e-7);
      expect(shallowError).toBeGreaterThan(1e-3);
      expect(deepError * 100).toBeLessThan(shallowError);
      // A 16-bit source is written back at 16 bits unless told otherwise.
      await writeImage(file(`again.${ext}`), deep);
      expect((await sharp(file(`again.${ext}`)).metadata()).depth).toBe('ushort');
    }
  });

  it('reads 16-bit greyscale without losing precision', async () => {
    const values = [0, 1000, 40001, 65535];
    await sharp(new Uint16Array(values), { raw: { width: 2, height: 2, channels: 1 } })
      .toColourspace('grey16')
      .png()
      .toFile(file('grey16.png'));
    const image = await readImage(file('grey16.png'));
    expect(image.meta).toMatchObject({ bitDepth: 16, colourSpace: 'grey16', hadAlpha: false });
    for (let c = 0; c < 3; c++) {
      expect(Array.from(image.data.subarray(c * 4, c * 4 + 4))).toEqual(
        values.map((v) => Math.fround(v / 65535)),
      );
    }
  });

  it('converts a CMYK JPEG to sRGB', async () => {
    // Four 16×16 patches: red, green, blue, mid grey.
    const colours = [
      [230, 20, 20],
      [20, 200, 20],
      [20, 20, 230],
      [128, 128, 128],
    ];
    const raw = Buffer.alloc(64 * 16 * 3);
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 64; x++) raw.set(colours[x >> 4] as number[], (y * 64 + x) * 3);
    }
    await sharp(raw, { raw: { width: 64, height: 16, channels: 3 } })
      .toColourspace('cmyk')
      .jpeg({ quality: 95 })
      .toFile(file('cmyk.jpg'));
    const header = await sharp(file('cmyk.jpg')).metadata();
    expect([header.space, header.channels]).toEqual(['cmyk', 4]);
    const image = await readImage(file('cmyk.jpg'));
    expect(image.meta.colourSpace).toBe('cmyk');
    const [red, green, blue, grey] = [8, 24, 40, 56].map((x) => pixel(image, x, 8));
    for (const [patch, channel] of [
      [red, 0],
      [green, 1],
      [blue, 2],
    ] as const) {
      const p = patch as number[];
      const others = p.filter((_, c) => c !== channel);
      // CMYK (SWOP) cannot hold saturated sRGB green and blue: the hue survives, not the chroma.
      expect(p[channel]).toBeGreaterThan(Math.max(...others) + 0.2);
    }
    const g = grey as number[];
    expect(Math.max(...g) - Math.min(...g)).toBeLessThan(0.06);
    expect(Math.abs((g[1] as number) - 128 / 255)).toBeLessThan(0.12);
  });

  it('converts through an embedded ICC profile (Display P3) to sRGB', async () => {
    await sharp({ create: { width: 4, height: 4, channels: 3, background: '#ff0000' } })
      .withIccProfile('p3')
      .png()
      .toFile(file('p3.png'));
    // The stored samples are P3 numbers, not sRGB red…
    const stored = await sharp(file('p3.png'), { ignoreIcc: true }).raw().toBuffer();
    expect(stored[1]).toBeGreaterThan(20);
    // …and reading applies the profile.
    const image = await readImage(file('p3.png'));
    expect(pixel(image, 1, 1).map((v) => Math.round(v * 255))).toEqual([255, 0, 0]);
  });

  it('expands a palette PNG to its colours', async () => {
    const raw = Buffer.alloc(8 * 8 * 3);
    const palette = [
      [0, 100, 200],
      [250, 10, 60],
    ];
    for (let i = 0; i < 64; i++) raw.set(palette[i % 2] as number[], i * 3);
    await sharp(raw, { raw: { width: 8, height: 8, channels: 3 } })
      .png({ palette: true, dither: 0 })
      .toFile(file('palette.png'));
    expect((await sharp(file('palette.png')).metadata()).isPalette).toBe(true);
    const image = await readImage(file('palette.png'));
    expect(pixel(image, 0, 0)).toEqual([0, 100, 200].map((v) => Math.fround(v / 255)));
    expect(pixel(image, 1, 0)).toEqual([250, 10, 60].map((v) => Math.fround(v / 255)));
  });

  it('keeps alpha aside and puts it back on write', async () => {
    const raw = Buffer.alloc(4 * 4 * 4);
    for (let i = 0; i < 16; i++) raw.set([200, 100, 50, i * 17], i * 4);
    await sharp(raw, { raw: { width: 4, height: 4, channels: 4 } })
      .png()
      .toFile(file('alpha.png'));
    const image = await readImage(file('alpha.png'));
    expect(image.meta.hadAlpha).toBe(true);
    expect(Array.from(image.alpha ?? [])).toEqual(
      Array.from({ length: 16 }, (_, i) => Math.fround((i * 17) / 255)),
    );
    // Colour is not premultiplied, even where alpha is 0.
    expect(pixel(image, 0, 0)).toEqual([200, 100, 50].map((v) => Math.fround(v / 255)));
    await writeImage(file('alpha-out.png'), image);
    const { data, info } = await sharp(file('alpha-out.png')).raw().toBuffer({
      resolveWithObject: true,
    });
    expect(info.channels).toBe(4);
    expect(Buffer.compare(data, raw)).toBe(0);
  });
});

describe('bad input', () => {
  it('refuses garbage, truncated, empty and missing files with BAD_FILE naming the file', async () => {
    await writeFile(file('garbage.png'), Buffer.from('this is not an image at all'));
    await expectError(readImage(file('garbage.png')), 'BAD_FILE', file('garbage.png'));

    const noise = Buffer.from(Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7919) % 251));
    const png = await sharp(noise, { raw: { width: 64, height: 64, channels: 3 } })
      .png()
      .toBuffer();
    await writeFile(file('truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
    await expectError(readImage(file('truncated.png')), 'BAD_FILE', file('truncated.png'));

    const jpeg = await sharp(noise, { raw: { width: 64, height: 64, channels: 3 } })
      .jpeg()
      .toBuffer();
    await writeFile(file('truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length / 2)));
    await expectError(readImage(file('truncated.jpg')), 'BAD_FILE', file('truncated.jpg'));

    await writeFile(file('empty.png'), Buffer.alloc(0));
    await expectError(readImage(file('empty.png')), 'BAD_FILE', 'empty file');
    await expectError(readImage(file('missing.png')), 'BAD_FILE', 'file not found');
    await expectError(readImage(dir), 'BAD_FILE', 'not a file');
  });

  it('refuses formats Retrace does not handle', async () => {
    await writeFile(
      file('vector.svg'),
      '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>',
    );
    await expectError(readImage(file('vector.svg')), 'BAD_FILE', "unsupported image format 'svg'");
  });

  it('refuses a PNG declaring 40000×40000 pixels before decoding it (TOO_LARGE)', async () => {
    const chunk = (type: string, data: Buffer) => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const out = Buffer.alloc(body.length + 8);
      out.writeUInt32BE(data.length, 0);
      body.copy(out, 4);
      out.writeUInt32BE(crc32(body), body.length + 4);
      return out;
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(40000, 0);
    ihdr.writeUInt32BE(40000, 4);
    ihdr.set([8, 2, 0, 0, 0], 8);
    const bomb = Buffer.concat([
      Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'),
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(Buffer.alloc(1000))),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    await writeFile(file('bomb.png'), bomb);
    await expectError(readImage(file('bomb.png')), 'TOO_LARGE', '40000×40000');
    // The limit is the caller's to lower.
    await writeImage(file('small.png'), smoothImage(20, 10));
    await expectError(readImage(file('small.png'), { maxPixels: 199 }), 'TOO_LARGE', 'small.png');
    await expect(readImage(file('small.png'), { maxPixels: 200 })).resolves.toBeDefined();
  });

  it('rejects malformed images and options on write', async () => {
    const image = smoothImage(4, 4);
    await expectError(writeImage(file('x.bmp'), image), 'BAD_INPUT', 'unsupported output type');
    await expectError(
      writeImage(file('x.png'), { ...image, data: new Float32Array(5) }),
      'BAD_INPUT',
      'expected 3×4×4',
    );
    await expectError(
      writeImage(file('x.jpg'), image, { bitDepth: 16 }),
      'BAD_INPUT',
      '16-bit output needs PNG or TIFF',
    );
    await expectError(writeImage(file('x.jpg'), image, { quality: 0 }), 'BAD_INPUT', 'quality');
  });
});

describe('atomic writes', () => {
  async function listing(folder: string) {
    return (await readdir(folder)).sort();
  }

  it('leaves no partial file (and the old file intact) when the encoder fails', async () => {
    const folder = path.join(dir, 'atomic-encode');
    await mkdir(folder);
    const target = path.join(folder, 'wide.webp');
    await writeFile(target, 'previous contents');
    // WebP cannot hold an image wider than 16383 pixels.
    const wide = smoothImage(16400, 2);
    await expectError(writeImage(target, wide), 'BAD_INPUT', target);
    expect(await listing(folder)).toEqual(['wide.webp']);
    expect(await readFile(target, 'utf8')).toBe('previous contents');
  });

  it('removes its partial file when the final rename fails', async () => {
    const folder = path.join(dir, 'atomic-rename');
    const target = path.join(folder, 'taken.png');
    // A non-empty folder where the file should go: the rename cannot replace it.
    await mkdir(path.join(target, 'inside'), { recursive: true });
    await expectError(writeImage(target, smoothImage(8, 8)), 'BAD_FILE', target);
    expect(await listing(folder)).toEqual(['taken.png']);
  });

  it('writes through a hidden partial file carrying the batch marker', async () => {
    const folder = path.join(dir, 'atomic-ok');
    await mkdir(folder);
    const target = path.join(folder, 'out.png');
    renames.length = 0;
    await writeImage(target, smoothImage(32, 32));
    expect(await listing(folder)).toEqual(['out.png']);
    expect(renames).toHaveLength(1);
    const [from, to] = renames[0] ?? [];
    expect(to).toBe(target);
    expect(path.dirname(from ?? '')).toBe(folder);
    expect(path.basename(from ?? '')).toMatch(
      new RegExp(`^\\.out\\.png${PARTIAL_MARKER.replace(/\./g, '\\.')}-[0-9]+-[0-9a-f]+$`),
    );
  });
});

describe('embedded parameters', () => {
  const params = formatA1111({
    prompt: 'a red circle — über café',
    negativePrompt: 'blurry',
    steps: 20,
    sampler: 'DDIM',
    guidance: 3,
    seed: 1,
    width: 64,
    height: 64,
    model: 'shapes-b2',
  });
  const retrace = { job: 'generate', seed: 1, prompt: 'a red circle — über café ✓', steps: 20 };

  it('formats A1111 parameters', () => {
    expect(
      formatA1111({
        prompt: 'prompt',
        negativePrompt: 'bad',
        steps: 20,
        sampler: 'DDIM',
        guidance: 3,
        seed: 1,
        width: 64,
        height: 64,
        model: 'shapes-b2',
      }),
    ).toBe(
      'prompt\nNegative prompt: bad\nSteps: 20, Sampler: DDIM, CFG scale: 3, Seed: 1, Size: 64x64, Model: shapes-b2',
    );
    // No negative line when there is none; values that would break the line are JSON-quoted.
    expect(
      formatA1111({
        prompt: '',
        steps: 5,
        sampler: 'Resfusion',
        seed: 7,
        width: 10,
        height: 20,
        model: 'restore, v1',
        extra: { Tiles: 4 },
      }),
    ).toBe('\nSteps: 5, Sampler: Resfusion, Seed: 7, Size: 10x20, Model: "restore, v1", Tiles: 4');
  });

  it('PNG: tEXt chunks that a plain chunk parse reads, and readImageMetadata round-trips', async () => {
    const latin1Params = 'a red circle, café\nSteps: 20, Sampler: DDIM, Seed: 1';
    await writeImage(file('meta.png'), smoothImage(16, 16), {
      metadata: { retrace, parameters: latin1Params },
    });
    const chunks = parsePngChunks(await readFile(file('meta.png')));
    expect(chunks[0]?.type).toBe('IHDR');
    const texts = new Map(
      chunks
        .filter((c) => c.type === 'tEXt')
        .map((c) => {
          const nul = c.data.indexOf(0);
          return [c.data.toString('latin1', 0, nul), c.data.toString('latin1', nul + 1)];
        }),
    );
    expect(JSON.parse(texts.get('retrace') ?? '')).toEqual(retrace);
    expect(texts.get('parameters')).toBe(latin1Params);
    // The text chunks come before the pixel data, where every reader looks.
    const types = chunks.map((c) => c.type);
    expect(types.lastIndexOf('tEXt')).toBeLessThan(types.indexOf('IDAT'));
    expect(await readImageMetadata(file('meta.png'))).toEqual({
      retrace,
      parameters: latin1Params,
    });
    // sharp (libspng) reads the same chunks.
    const comments = (await sharp(file('meta.png')).metadata()).comments ?? [];
    expect(comments.map((c) => c.keyword).sort()).toEqual(['parameters', 'retrace']);
  });

  it('PNG: text outside Latin-1 goes into iTXt (UTF-8) and reads back', async () => {
    await writeImage(file('meta-utf8.png'), smoothImage(8, 8), {
      metadata: { retrace, parameters: params },
    });
    const chunks = parsePngChunks(await readFile(file('meta-utf8.png')));
    expect(chunks.some((c) => c.type === 'iTXt')).toBe(true);
    expect(await readImageMetadata(file('meta-utf8.png'))).toEqual({ retrace, parameters: params });
  });

  it.each(['jpg', 'webp', 'avif', 'tif'])('.%s: XMP round trip', async (ext) => {
    const target = file(`meta.${ext}`);
    await writeImage(target, smoothImage(16, 16), { metadata: { retrace, parameters: params } });
    expect(await readImageMetadata(target)).toEqual({ retrace, parameters: params });
    const header = await sharp(target).metadata();
    expect(header.xmpAsString).toContain('retrace:json');
    if (ext !== 'tif') {
      // EXIF UserComment (what A1111-style readers look at; libexif writes it as ASCII).
      expect(header.exif?.toString('latin1')).toContain('Steps: 20, Sampler: DDIM');
    }
  });

  it('gives undefined for a file without parameters and only parameters for a foreign PNG', async () => {
    await writeImage(file('plain.png'), smoothImage(8, 8));
    await writeImage(file('plain.jpg'), smoothImage(8, 8));
    expect(await readImageMetadata(file('plain.png'))).toBeUndefined();
    expect(await readImageMetadata(file('plain.jpg'))).toBeUndefined();
    const chunks = parsePngChunks(await readFile(file('plain.png')));
    const a1111 = Buffer.from('parameters\0cat\nSteps: 20, Seed: 3', 'latin1');
    const body = Buffer.concat([Buffer.from('tEXt'), a1111]);
    const text = Buffer.alloc(body.length + 8);
    text.writeUInt32BE(a1111.length, 0);
    body.copy(text, 4);
    text.writeUInt32BE(crc32(body), body.length + 4);
    const original = await readFile(file('plain.png'));
    const ihdrEnd = 8 + 12 + (chunks[0]?.data.length ?? 0);
    await writeFile(
      file('foreign.png'),
      Buffer.concat([original.subarray(0, ihdrEnd), text, original.subarray(ihdrEnd)]),
    );
    expect(await readImageMetadata(file('foreign.png'))).toEqual({
      retrace: {},
      parameters: 'cat\nSteps: 20, Seed: 3',
    });
  });
});

describe('conversions', () => {
  it('maps [0,1] to [-1,1] and back, clamping what overshoots', () => {
    const image = smoothImage(5, 3);
    const model = toModelInput(image);
    expect(model).toBeInstanceOf(Float64Array);
    expect(model[0]).toBe(-1);
    expect(model[4]).toBe(1);
    const model32 = toModelInput32(image);
    expect(model32).toBeInstanceOf(Float32Array);
    expect(Array.from(model32)).toEqual(Array.from(model, Math.fround));
    const back = fromModelOutput(model, 5, 3);
    expect(maxAbsDiff(back.data, image.data)).toBeLessThan(1e-7);
    const wild = fromModelOutput(new Float32Array([-3, 3, NaN, 0, -1, 1, 0.5, -0.5, 2]), 3, 1);
    expect(Array.from(wild.data)).toEqual([0, 1, 0, 0.5, 0, 1, 0.75, 0.25, 1]);
    expect(() => fromModelOutput(new Float64Array(8), 3, 1)).toThrow(/expected 3×3×1/);
  });

  it('resizes with 16-bit precision, alpha premultiplied', async () => {
    const n = 40 * 30;
    const flat: RgbImage = {
      ...smoothImage(40, 30),
      data: new Float32Array(3 * n).map(
        (_, i) => [0.123456, 0.5, 0.987654][Math.floor(i / n)] as number,
      ),
      alpha: new Float32Array(n).fill(0.5),
    };
    for (const [w, h] of [
      [17, 11],
      [97, 64],
    ] as const) {
      const out = await resizeImage(flat, w, h);
      expect([out.width, out.height, out.data.length, out.alpha?.length]).toEqual([
        w,
        h,
        3 * w * h,
        w * h,
      ]);
      // A flat colour stays that colour (not darkened by its half transparency).
      for (let c = 0; c < 3; c++) {
        const want = [0.123456, 0.5, 0.987654][c] as number;
        expect(
          maxAbsDiff(out.data.subarray(c * w * h, (c + 1) * w * h), new Array(w * h).fill(want)),
        ).toBeLessThan(3 / 65535);
      }
      expect(maxAbsDiff(out.alpha ?? [], new Array(w * h).fill(0.5))).toBeLessThan(3 / 65535);
    }
    // Downscaling a horizontal ramp by 2 gives the ramp at the new pixel centres.
    const ramp: RgbImage = {
      ...smoothImage(64, 4),
      data: new Float32Array(3 * 256).map((_, i) => (i % 64) / 64),
    };
    const half = await resizeImage(ramp, 32, 2);
    const row = Array.from(half.data.subarray(8, 24));
    expect(
      maxAbsDiff(
        row,
        Array.from({ length: 16 }, (_, k) => (2 * (k + 8) + 0.5) / 64),
      ),
    ).toBeLessThan(1e-4);
    await expect(resizeImage(ramp, 0, 2)).rejects.toThrow(/target size/);
  });

  it('fits sizes to multiples', () => {
    expect(fitToMultiple(1000, 750, 8)).toEqual({ width: 1000, height: 752 });
    expect(fitToMultiple(3, 5, 8)).toEqual({ width: 8, height: 8 });
    expect(fitToMultiple(4000, 3000, 64, { maxSide: 512 })).toEqual({ width: 512, height: 384 });
    expect(fitToMultiple(3000, 4000, 8, { maxSide: 100 })).toEqual({ width: 72, height: 96 });
    expect(fitToMultiple(50, 40, 8, { maxSide: 512 })).toEqual({ width: 48, height: 40 });
    expect(() => fitToMultiple(10, 10, 0)).toThrow(/multiple/);
    expect(() => fitToMultiple(10, 10, 8, { maxSide: 4 })).toThrow(/maxSide/);
  });

  it('crops to an aspect ratio around the centre', () => {
    const image = smoothImage(40, 20, true);
    const square = centreCropToAspect(image, 1, 1);
    expect([square.width, square.height]).toEqual([20, 20]);
    expect(pixel(square, 0, 0)).toEqual(pixel(image, 10, 0));
    expect(pixel(square, 19, 19)).toEqual(pixel(image, 29, 19));
    expect(square.alpha?.[0]).toBe(image.alpha?.[10]);
    const tall = centreCropToAspect(image, 1, 2);
    expect([tall.width, tall.height]).toEqual([10, 20]);
    expect(centreCropToAspect(image, 2, 1)).toBe(image);
  });

  it('makes small 8-bit preview PNGs, never enlarged', async () => {
    const big = await previewPng(smoothImage(300, 120, true), 100);
    const header = await sharp(big).metadata();
    expect([header.format, header.width, header.height, header.depth, header.hasAlpha]).toEqual([
      'png',
      100,
      40,
      'uchar',
      true,
    ]);
    const small = await sharp(await previewPng(smoothImage(30, 20), 100)).metadata();
    expect([small.width, small.height]).toEqual([30, 20]);
  });

  it('hashes files with sha256', async () => {
    const bytes = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 256));
    await writeFile(file('bytes.bin'), bytes);
    expect(await sha256File(file('bytes.bin'))).toBe(
      createHash('sha256').update(bytes).digest('hex'),
    );
    await expectError(sha256File(file('nope.bin')), 'BAD_FILE', 'nope.bin');
  });
});

describe('edit masks on a coarser grid (ALGORITHMS.md §5)', () => {
  it('area-averages exactly, fractional cell edges weighted', async () => {
    const { areaDownsample } = await import('../../../electron/engine/images/photo.js');
    // 6×3 pixels into 4×2 cells: each cell covers 1.5 × 1.5 pixels.
    const values = Uint8Array.from([
      255, 255, 255, 0, 0, 0, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    const cells = areaDownsample(values, 6, 3, 4, 2);
    // Top-left cell: rows 0–1.5, columns 0–1.5, all of it inside the white block → 1.
    expect(cells[0]).toBeCloseTo(1, 12);
    // Second cell: columns 1.5–3 (white), rows 0–1.5 (white) → 1; third: columns 3–4.5 → 0.
    expect(cells[1]).toBeCloseTo(1, 12);
    expect(cells[2]).toBeCloseTo(0, 12);
    // Bottom-left: rows 1.5–3, half a row white (row 1, weight 0.5) of 1.5 → 1/3.
    expect(cells[4]).toBeCloseTo(1 / 3, 12);
    const all = areaDownsample(new Uint8Array(6 * 3).fill(255), 6, 3, 4, 2);
    expect([...all].every((v) => v === 1)).toBe(true);
  });
});

describe('mask feathering', () => {
  it('keeps one channel; exactly 0 beyond the feather, 255 well inside, a ramp across the edge', async () => {
    const { featherMask, defaultFeather } =
      await import('../../../electron/engine/images/photo.js');
    const [W, H] = [40, 30];
    const binary = new Uint8Array(W * H);
    for (let y = 10; y < 20; y++) binary.fill(255, y * W + 10, y * W + 30);
    const feather = 4;
    const m = await featherMask(binary, W, H, feather);
    expect(m.length).toBe(W * H);
    // Distance (in pixels, Chebyshev) from the painted rectangle [10, 30) × [10, 20).
    const outside = (x: number, y: number) => Math.max(10 - x, x - 29, 10 - y, y - 19, 0);
    const inside = (x: number, y: number) => Math.min(x - 10, 29 - x, y - 10, 19 - y);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const v = m[y * W + x] as number;
        if (outside(x, y) > 2 * feather) expect(v, `(${x}, ${y})`).toBe(0);
        if (inside(x, y) >= 2 * feather) expect(v, `(${x}, ${y})`).toBe(255);
      }
    }
    // Across the left edge on the middle row the ramp rises monotonically from 0 to 255.
    const row = Array.from(m.subarray(15 * W, 15 * W + 20));
    for (let i = 1; i < row.length; i++)
      expect(row[i]).toBeGreaterThanOrEqual(row[i - 1] as number);
    expect(row[0]).toBe(0);
    expect(row[19]).toBe(255);
    expect(defaultFeather(6000, 4000)).toBe(30);
    expect(defaultFeather(100, 80)).toBe(2);
  });
});
