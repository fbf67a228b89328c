// `retrace edit` and `replay --source --mask` end to end on the tiny Stable Diffusion fixture
// (ALGORITHMS.md §5, issue 10): the result at the photo's own size and orientation, every sample
// outside the feathered mask the photo's own, the ICC profile kept, honest network-call counts,
// and one clear line (exit 2, nothing written) for each kind of bad input.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../electron/cli/main.js';
import { readMask } from '../../electron/engine/images/photo.js';

const sd = path.resolve('test/fixtures/tiny-sd');
let work: string;

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    [
      '--quiet',
      '--provider',
      'cpu',
      '--threads',
      '1',
      '--user-dir',
      path.join(work, 'user'),
      ...argv,
    ],
    { out: (s) => out.push(s), err: (s) => err.push(s), handleSignals: false },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** A photo-like test image: smooth light, hard-edged objects and sensor-like noise. */
async function scene(file: string, width: number, height: number, seed = 1) {
  const data = Buffer.alloc(width * height * 3);
  let s = seed;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = 3 * (y * width + x);
      const inDisc = (x - width * 0.3) ** 2 + (y - height * 0.5) ** 2 < (height * 0.25) ** 2;
      const inBox = x > width * 0.6 && x < width * 0.9 && y > height * 0.2 && y < height * 0.7;
      const base = inDisc
        ? [200, 60, 50]
        : inBox
          ? [40, 90, 200]
          : [90 + (100 * y) / height, 120 + (60 * x) / width, 140];
      for (let c = 0; c < 3; c++)
        data[i + c] = Math.max(0, Math.min(255, (base[c] as number) + 12 * rand()));
    }
  }
  return data;
}

const rawOf = async (file: string, opts: { ignoreIcc?: boolean } = {}) =>
  sharp(file, { autoOrient: true, ...opts })
    .raw()
    .toBuffer({ resolveWithObject: true });

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'retrace-edit-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const common = ['--model', sd, '--steps', '10', '--source-prompt', 'a red disc and a blue box'];

describe('retrace edit', () => {
  it('identity at full resolution: a 6000×4000 JPEG, orientation 6, ICC profile → the same 4000×6000 samples', async () => {
    const photo = path.join(work, 'big.jpg');
    await sharp(await scene(photo, 6000, 4000), { raw: { width: 6000, height: 4000, channels: 3 } })
      .withIccProfile('p3')
      .withMetadata({ orientation: 6 })
      .jpeg({ quality: 90 })
      .toFile(photo);
    const meta = await sharp(photo).metadata();
    expect([meta.width, meta.height, meta.orientation]).toEqual([6000, 4000, 6]);
    expect(meta.icc).toBeDefined();
    const out = path.join(work, 'same.png');
    const r = await cli(
      'edit',
      photo,
      ...common,
      '--prompt',
      'a red disc and a blue box',
      '--out',
      out,
      '--json',
    );
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const result = JSON.parse(r.out) as Record<string, unknown>;
    expect(result).toMatchObject({ width: 4000, height: 6000, unchanged: true });
    // Samples equal as stored (no colour conversion on either side)…
    const [a, b] = await Promise.all([
      rawOf(photo, { ignoreIcc: true }),
      rawOf(out, { ignoreIcc: true }),
    ]);
    expect([b.info.width, b.info.height, b.info.channels]).toEqual([4000, 6000, 3]);
    expect(b.data.equals(a.data)).toBe(true);
    // …and as any colour-managed reader shows them, because the profile came along.
    const [c, d] = await Promise.all([rawOf(photo), rawOf(out)]);
    expect(d.data.equals(c.data)).toBe(true);
    expect((await sharp(out).metadata()).icc?.equals(meta.icc as Buffer)).toBe(true);
  }, 240_000);

  it('a masked edit changes pixels inside and not one outside, in one job and from an inversion file', async () => {
    const [W, H] = [300, 200];
    const photo = path.join(work, 'photo.png');
    await sharp(await scene(photo, W, H, 7), { raw: { width: W, height: H, channels: 3 } }).toFile(
      photo,
    );
    // The user's mask: the disc's half of the picture, drawn at another resolution (same aspect).
    const mask = path.join(work, 'mask.png');
    const m = Buffer.alloc(150 * 100);
    for (let y = 0; y < 100; y++) for (let x = 0; x < 75; x++) m[y * 150 + x] = 255;
    await sharp(m, { raw: { width: 150, height: 100, channels: 1 } }).toFile(mask);
    const edit = ['--prompt', 'a green disc and a blue box'];
    const masked = await cli(
      'edit',
      photo,
      ...common,
      ...edit,
      '--mask',
      mask,
      '--out',
      path.join(work, 'masked.png'),
      '--export-inversion',
      path.join(work, 'photo.inversion.safetensors'),
      '--json',
    );
    const whole = await cli(
      'edit',
      photo,
      ...common,
      ...edit,
      '--out',
      path.join(work, 'whole.png'),
      '--json',
    );
    expect([masked.code, whole.code], masked.err + whole.err).toEqual([0, 0]);
    const mr = JSON.parse(masked.out) as { nfe: number; width: number; maskCoverage: number };
    const wr = JSON.parse(whole.out) as { nfe: number };
    // (M − 1) calls to invert and (M − 1) to replay, mask or not (M kept levels).
    expect(mr.nfe).toBe(wr.nfe);
    expect(mr.nfe % 2).toBe(0);
    expect(mr.nfe).toBeGreaterThan(2);
    expect(mr.width).toBe(W);
    expect(mr.maskCoverage).toBeCloseTo(0.5, 2);

    const feathered = await readMask(mask, W, H);
    const src = (await rawOf(photo)).data;
    const check = async (file: string) => {
      const out = (await rawOf(file)).data;
      let outsideDiffer = 0;
      let insideDiffer = 0;
      let zeros = 0;
      for (let p = 0; p < W * H; p++) {
        const differs =
          out[3 * p] !== src[3 * p] ||
          out[3 * p + 1] !== src[3 * p + 1] ||
          out[3 * p + 2] !== src[3 * p + 2];
        if (feathered.values[p] === 0) {
          zeros += 1;
          if (differs) outsideDiffer += 1;
        } else if (feathered.values[p] === 255 && differs) insideDiffer += 1;
      }
      return { outsideDiffer, insideDiffer, zeros };
    };
    // Independently of the engine's mask code: the painted half is x < 150; the default feather
    // is 2 px, so every pixel from x = 156 on must be the photo's, and the edit must show well
    // inside (x < 144).
    const geometry = async (file: string) => {
      const out = (await rawOf(file)).data;
      let farDiffer = 0;
      let insideDiffer = 0;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const p = y * W + x;
          const differs = [0, 1, 2].some((c) => out[3 * p + c] !== src[3 * p + c]);
          if (x >= 156 && differs) farDiffer += 1;
          if (x < 144 && differs) insideDiffer += 1;
        }
      }
      return { farDiffer, insideDiffer };
    };
    const g = await geometry(path.join(work, 'masked.png'));
    expect(g.farDiffer).toBe(0);
    expect(g.insideDiffer).toBeGreaterThan(0.5 * 144 * H);
    const inJob = await check(path.join(work, 'masked.png'));
    expect(inJob.zeros).toBeGreaterThan(0.4 * W * H);
    expect(inJob.outsideDiffer).toBe(0);
    expect(inJob.insideDiffer).toBeGreaterThan(0.25 * W * H);
    const unmasked = await check(path.join(work, 'whole.png'));
    expect(unmasked.outsideDiffer).toBeGreaterThan(0);

    // The naive DDIM baseline: same composite (exact outside), but its round trip drifts.
    const naive = await cli(
      'edit',
      photo,
      ...common,
      ...edit,
      '--mask',
      mask,
      '--method',
      'ddim-inversion',
      '--out',
      path.join(work, 'naive.png'),
      '--json',
    );
    expect(naive.code, naive.err).toBe(0);
    expect((await check(path.join(work, 'naive.png'))).outsideDiffer).toBe(0);
    const naiveSame = await cli(
      'edit',
      photo,
      ...common,
      '--prompt',
      'a red disc and a blue box',
      '--method',
      'ddim-inversion',
      '--out',
      path.join(work, 'naive-same.png'),
      '--json',
    );
    expect(JSON.parse(naiveSame.out)).toMatchObject({ unchanged: false });
    const noFile = await cli(
      'edit',
      photo,
      ...common,
      ...edit,
      '--method',
      'ddim-inversion',
      '--export-inversion',
      path.join(work, 'n.inversion.safetensors'),
      '--out',
      path.join(work, 'n.png'),
    );
    expect(noFile.code).toBe(2);
    expect(noFile.err).toMatch(/only a BDIA edit has an exact inversion/);

    // The same edit from the exported inversion: the source trajectory is replayed first.
    await cli('models', 'import', sd, '--id', 'tiny-sd');
    const replay = await cli(
      'replay',
      path.join(work, 'photo.inversion.safetensors'),
      '--source',
      photo,
      '--mask',
      mask,
      ...edit,
      '--out',
      path.join(work, 'replayed.png'),
      '--json',
    );
    expect(replay.code, replay.err).toBe(0);
    // (M − 1) for the source trajectory, (M − 1) for the edit.
    expect((JSON.parse(replay.out) as { nfe: number }).nfe).toBe(mr.nfe);
    const fromFile = await check(path.join(work, 'replayed.png'));
    expect(fromFile.outsideDiffer).toBe(0);
    expect(fromFile.insideDiffer).toBeGreaterThan(0.25 * W * H);
    // Replaying the source prompt onto the photo gives the photo back, after one replay.
    const same = await cli(
      'replay',
      path.join(work, 'photo.inversion.safetensors'),
      '--source',
      photo,
      '--out',
      path.join(work, 'back.png'),
      '--json',
    );
    expect(JSON.parse(same.out)).toMatchObject({ nfe: mr.nfe / 2, unchanged: true });
    expect((await rawOf(path.join(work, 'back.png'))).data.equals(src)).toBe(true);
  }, 240_000);

  it('a 16-bit PNG keeps its depth and every sample outside the mask', async () => {
    const [W, H] = [160, 96];
    const photo = path.join(work, 'deep.png');
    const data = new Uint16Array(W * H * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 65536;
    await sharp(data, { raw: { width: W, height: H, channels: 3 } })
      .toColourspace('rgb16')
      .png()
      .toFile(photo);
    const mask = path.join(work, 'deep-mask.png');
    const m = Buffer.alloc(W * H);
    for (let y = 30; y < 70; y++) m.fill(255, y * W + 40, y * W + 120);
    await sharp(m, { raw: { width: W, height: H, channels: 1 } })
      .png()
      .toFile(mask);
    const out = path.join(work, 'deep-out.png');
    const r = await cli(
      'edit',
      photo,
      ...common,
      '--prompt',
      'a green disc',
      '--mask',
      mask,
      '--out',
      out,
    );
    expect(r.code, r.err).toBe(0);
    expect((await sharp(out).metadata()).depth).toBe('ushort');
    const read = async (f: string) => {
      const { data: d } = await sharp(f)
        .raw({ depth: 'ushort' })
        .toBuffer({ resolveWithObject: true });
      return new Uint16Array(d.buffer, d.byteOffset, d.length / 2);
    };
    const [a, b] = [await read(photo), await read(out)];
    const feathered = await readMask(mask, W, H);
    let outside = 0;
    let inside = 0;
    for (let p = 0; p < W * H; p++) {
      const differs = [0, 1, 2].some((c) => a[3 * p + c] !== b[3 * p + c]);
      if (feathered.values[p] === 0 && differs) outside += 1;
      if (feathered.values[p] === 255 && differs) inside += 1;
    }
    expect(outside).toBe(0);
    expect(inside).toBeGreaterThan(0);
  }, 240_000);

  it('--auto-mask finds the mask from the two prompts, writes it with --mask-out, and keeps the rest exact', async () => {
    const [W, H] = [256, 192];
    const photo = path.join(work, 'auto.png');
    await sharp(await scene(photo, W, H, 11), { raw: { width: W, height: H, channels: 3 } }).toFile(
      photo,
    );
    const maskOut = path.join(work, 'auto-mask.png');
    const r = await cli(
      'edit',
      photo,
      ...common,
      '--prompt',
      'a green disc and a blue box',
      '--auto-mask',
      // The tiny random network's difference map is nearly flat: DiffEdit's ratio 3 marks nothing.
      '--mask-ratio',
      '2',
      '--mask-out',
      maskOut,
      '--out',
      path.join(work, 'auto-out.png'),
      '--json',
    );
    expect(r.code, r.err).toBe(0);
    const result = JSON.parse(r.out) as {
      nfe: number;
      maskNfe: number;
      maskCoverage: number;
      mask: string;
    };
    // DiffEdit's 10 draws, one network call each, on top of the edit's own calls.
    expect(result.maskNfe).toBe(10);
    expect(result.mask).toBe(maskOut);
    expect(result.maskCoverage).toBeGreaterThan(0);
    expect(result.maskCoverage).toBeLessThan(1);
    const header = await sharp(maskOut).metadata();
    expect([header.width, header.height, header.channels]).toEqual([W, H, 1]);
    const written = await sharp(maskOut)
      .extractChannel(0)
      .raw()
      .toBuffer({ resolveWithObject: true });
    const src = (await rawOf(photo)).data;
    const out = (await rawOf(path.join(work, 'auto-out.png'))).data;
    let outside = 0;
    let kept = 0;
    for (let p = 0; p < W * H; p++) {
      if (written.data[p] !== 0) continue;
      kept += 1;
      if ([0, 1, 2].some((c) => out[3 * p + c] !== src[3 * p + c])) outside += 1;
    }
    expect(kept).toBeGreaterThan(0);
    expect(outside).toBe(0);
    const both = await cli(
      'edit',
      photo,
      ...common,
      '--prompt',
      'x',
      '--auto-mask',
      '--mask',
      maskOut,
      '--out',
      path.join(work, 'both.png'),
    );
    expect(both.code).toBe(2);
    expect(both.err).toMatch(
      /--mask and --auto-mask: give a mask or ask for the automatic one, not both/,
    );
  }, 240_000);

  it('bad input: one line naming the file or option, exit 2, nothing written', async () => {
    const [W, H] = [120, 80];
    const photo = path.join(work, 'small.png');
    await sharp(await scene(photo, W, H, 3), { raw: { width: W, height: H, channels: 3 } }).toFile(
      photo,
    );
    const notImage = path.join(work, 'notes.png');
    await writeFile(notImage, 'this is not a picture');
    const black = path.join(work, 'black.png');
    await sharp({ create: { width: W, height: H, channels: 3, background: '#000' } })
      .png()
      .toFile(black);
    const edit = (out: string, ...extra: string[]) =>
      cli(
        'edit',
        photo,
        ...common,
        '--prompt',
        'a green disc',
        '--out',
        path.join(work, out),
        ...extra,
      );

    const cases: [string, string[], RegExp][] = [
      ['out-not-image.png', ['--mask', notImage], /notes\.png: not a readable image/],
      ['out-black.png', ['--mask', black], /black\.png: the mask covers nothing/],
      [
        'out-odd-size.png',
        ['--working-size', '100'],
        /--working-size 100: pack \S+ needs a multiple of \d+ \(e\.g\. \d+\)/,
      ],
      ['out-missing.png', ['--mask', path.join(work, 'nope.png')], /nope\.png: no such mask/],
    ];
    for (const [out, extra, why] of cases) {
      const r = await edit(out, ...extra);
      expect(r.code, out).toBe(2);
      expect(r.err.split('\n'), out).toHaveLength(1);
      expect(r.err, out).toMatch(why);
      expect(existsSync(path.join(work, out)), out).toBe(false);
    }

    // A mask of another aspect is stretched, with a warning.
    const wide = path.join(work, 'wide.png');
    await sharp({ create: { width: 300, height: 50, channels: 3, background: '#fff' } })
      .png()
      .toFile(wide);
    const stretched = await edit('stretched.png', '--mask', wide);
    expect(stretched.code).toBe(0);
    expect(stretched.err).toMatch(
      /warning: .*wide\.png: the mask is 300×50 and the photo 120×80; the mask was stretched/,
    );

    // A photo changed since its inversion is refused, naming both hashes.
    const inversion = path.join(work, 'small.inversion.safetensors');
    expect((await edit('with-inv.png', '--export-inversion', inversion)).code).toBe(0);
    const changed = path.join(work, 'changed.png');
    const bytes = await sharp(photo).raw().toBuffer();
    bytes[0] = (bytes[0] as number) ^ 1;
    await sharp(bytes, { raw: { width: W, height: H, channels: 3 } }).toFile(changed);
    await cli('models', 'import', sd, '--id', 'tiny-sd');
    const r = await cli(
      'replay',
      inversion,
      '--source',
      changed,
      '--prompt',
      'x',
      '--out',
      path.join(work, 'changed-out.png'),
    );
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      /changed\.png: not the photo .*\(its sha256 is [0-9a-f]{64}, the inversion recorded [0-9a-f]{64}/,
    );
    expect(existsSync(path.join(work, 'changed-out.png'))).toBe(false);
    const noSource = await cli(
      'replay',
      inversion,
      '--mask',
      wide,
      '--out',
      path.join(work, 'x.png'),
    );
    expect(noSource.code).toBe(2);
    expect(noSource.err).toMatch(/--mask needs --source/);
    expect(await readFile(photo)).toBeDefined();
  }, 240_000);
});
