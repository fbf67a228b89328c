// The `retrace` CLI end to end, in process (main(argv) with captured output), on real ONNX
// networks: the tiny Stable Diffusion fixture (imported from its diffusers/optimum folder) and the
// fixture restoration pack. Exit codes, JSON lines, files written, reports, resume and refusals.
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../electron/cli/main.js';
import { readImageMetadata } from '../../electron/engine/images/io.js';

const sd = path.resolve('test/fixtures/tiny-sd');
const restorePack = path.resolve('test/fixtures/restore-pack');
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

async function photo(file: string, width = 96, height = 64) {
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 251;
  await sharp(data, { raw: { width, height, channels: 3 } }).toFile(file);
  return file;
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'retrace-cli-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('retrace CLI', () => {
  it('usage errors exit 2 with a one-line reason', async () => {
    const r = await cli('generate', '--prompt', 'x', '--out', work);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--model/);
    const bad = await cli(
      'generate',
      '--model',
      sd,
      '--prompt',
      'x',
      '--steps',
      'many',
      '--out',
      work,
    );
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--steps must be a whole number/);
    const unknown = await cli(
      'generate',
      '--model',
      'no-such-pack',
      '--prompt',
      'x',
      '--out',
      work,
    );
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/no pack 'no-such-pack'/);
  });

  it('generate --count K writes K images from seeds S…S+K−1 with their parameters', async () => {
    const out = path.join(work, 'gen');
    const r = await cli(
      'generate',
      '--model',
      sd,
      '--prompt',
      'a red circle',
      '--steps',
      '4',
      '--seed',
      '10',
      '--count',
      '3',
      '--out',
      out,
      '--json',
    );
    expect(r.code).toBe(0);
    const result = JSON.parse(r.out) as { images: { file: string; seed: number }[]; nfe: number };
    expect(result.images.map((i) => i.seed)).toEqual([10, 11, 12]);
    expect(result.nfe).toBe(4);
    const files = (await readdir(out)).sort();
    expect(files).toEqual(['retrace-10.png', 'retrace-11.png', 'retrace-12.png']);
    const meta = await readImageMetadata(path.join(out, 'retrace-11.png'));
    expect(meta?.retrace).toMatchObject({ job: 'generate', seed: 11, prompt: 'a red circle' });
    expect(meta?.parameters).toMatch(/Seed: 11/);
  });

  it('roundtrip --json reports an exact BDIA round trip and the inexact baseline', async () => {
    const image = await photo(path.join(work, 'rt.png'));
    const bdia = await cli(
      'roundtrip',
      image,
      '--model',
      sd,
      '--prompt',
      'a photo',
      '--steps',
      '20',
      '--json',
    );
    expect(bdia.code).toBe(0);
    const r = JSON.parse(bdia.out) as Record<string, number>;
    expect(r.latentMaxAbsError).toBe(0);
    expect(r.pixelMaxAbsError).toBe(0);
    // 20 steps × strength 0.8 keep M = 16 levels; BDIA steps M − 1 = 15 times each way.
    expect(r.keptLevels).toBe(16);
    expect(r.steps).toBe(15);
    expect(r.nfe).toBe(2 * (r.steps ?? Number.NaN));
    expect(r.seconds).toBeGreaterThan(0);
    const naive = await cli(
      'roundtrip',
      image,
      '--model',
      sd,
      '--prompt',
      'a photo',
      '--steps',
      '20',
      '--method',
      'ddim-inversion',
      '--json',
    );
    const n = JSON.parse(naive.out) as Record<string, number>;
    expect(n.latentMaxAbsError).toBeGreaterThan(1e-4);
    // The naive baseline steps through all M intervals each way: one call more per direction.
    expect([n.keptLevels, n.steps, n.nfe]).toEqual([16, 16, 32]);
  });

  it('a pixel-space round trip returns identical 8-bit pixels', async () => {
    const pixelPack = path.resolve('test/fixtures/pixel-pack');
    const image = await photo(path.join(work, 'px.png'), 32, 32);
    const out = path.join(work, 'px-back.png');
    const r = await cli(
      'roundtrip',
      image,
      '--model',
      pixelPack,
      '--prompt',
      '',
      '--steps',
      '50',
      '--out',
      out,
      '--json',
    );
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as Record<string, number>;
    expect(report.latentMaxAbsError).toBe(0);
    expect(report.nfe).toBe(2 * 39);
    const pixels = async (f: string) => Buffer.from(await sharp(f).removeAlpha().raw().toBuffer());
    expect((await pixels(out)).equals(await pixels(image))).toBe(true);
  });

  it('invert → file → replay reproduces the round trip; another prompt edits; damage is refused', async () => {
    const image = await photo(path.join(work, 'inv.png'));
    const file = path.join(work, 'photo.inversion.safetensors');
    const inv = await cli(
      'invert',
      image,
      '--model',
      sd,
      '--prompt',
      'a cat',
      '--steps',
      '20',
      '--out',
      file,
      '--json',
    );
    expect(inv.code).toBe(0);
    const orphan = await cli('replay', file, '--out', path.join(work, 'orphan.png'));
    expect(orphan.code).toBe(2);
    expect(orphan.err).toMatch(/not installed here/);
    await cli('models', 'import', sd, '--id', 'tiny-sd');
    const same = await cli('replay', file, '--out', path.join(work, 'same.png'), '--json');
    const again = await cli('replay', file, '--out', path.join(work, 'again.png'));
    const edit = await cli(
      'replay',
      file,
      '--prompt',
      'a dog',
      '--out',
      path.join(work, 'edit.png'),
    );
    expect([same.code, again.code, edit.code]).toEqual([0, 0, 0]);
    const raw = async (f: string) =>
      (await sharp(path.join(work, f)).raw().toBuffer()).toString('base64');
    expect(await raw('same.png')).toBe(await raw('again.png'));
    expect(await raw('edit.png')).not.toBe(await raw('same.png'));
    const bytes = await readFile(file);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] as number) ^ 0xff;
    const damaged = path.join(work, 'damaged.inversion.safetensors');
    await writeFile(damaged, bytes);
    const refused = await cli('replay', damaged, '--out', path.join(work, 'x.png'));
    expect(refused.code).not.toBe(0);
    expect(refused.err).toMatch(/damaged|sha256|hash/i);
  });

  it('restore: a folder with a corrupt file and a sub-folder finishes, reports, exits 1; resume skips', async () => {
    const src = path.join(work, 'photos');
    await mkdir(path.join(src, 'trip'), { recursive: true });
    await photo(path.join(src, 'a.png'), 40, 24);
    await photo(path.join(src, 'trip', 'b.jpg'), 33, 17);
    await writeFile(path.join(src, 'broken.jpg'), 'not a jpeg');
    await writeFile(path.join(src, 'notes.txt'), 'ignored');
    const out = path.join(work, 'restored');
    const r = await cli(
      'restore',
      src,
      '--model',
      restorePack,
      '--out',
      out,
      '--recursive',
      '--json',
    );
    expect(r.code).toBe(1);
    const summary = JSON.parse(r.out) as { ok: number; failed: number; report: string };
    expect(summary).toMatchObject({ ok: 2, failed: 1 });
    const report = JSON.parse(await readFile(summary.report, 'utf8')) as {
      items: { input: string; status: string; error?: string }[];
    };
    const byInput = Object.fromEntries(report.items.map((i) => [i.input, i]));
    expect(Object.keys(byInput).sort()).toEqual(['a.png', 'broken.jpg', 'trip/b.jpg']);
    expect(byInput['broken.jpg']?.status).toBe('failed');
    expect(byInput['broken.jpg']?.error).toMatch(/broken\.jpg/);
    const csv = await readFile(summary.report.replace(/\.json$/, '.csv'), 'utf8');
    expect(csv.split(/\r?\n/)[0]).toBe('input,status,output,error,seconds');
    expect((await sharp(path.join(out, 'trip', 'b.jpg')).metadata()).width).toBe(33);
    await cp(path.join(src, 'a.png'), path.join(src, 'c.png'));
    const again = await cli(
      'restore',
      src,
      '--model',
      restorePack,
      '--out',
      out,
      '--recursive',
      '--skip-existing',
      '--json',
    );
    const second = JSON.parse(again.out) as { ok: number; skipped: number; failed: number };
    expect(second).toMatchObject({ ok: 1, skipped: 2, failed: 1 });
  });

  it('models list / info / import', async () => {
    const imported = await cli('models', 'import', sd, '--id', 'tiny-sd', '--json');
    expect(imported.code).toBe(0);
    const list = await cli('models', 'list', '--json');
    const ids = (JSON.parse(list.out) as { id: string }[]).map((p) => p.id);
    expect(ids).toContain('tiny-sd');
    const info = await cli('models', 'info', 'tiny-sd', '--json');
    expect(JSON.parse(info.out)).toMatchObject({ id: 'tiny-sd', task: 'text-to-image' });
    const broken = path.join(work, 'broken-pack');
    await mkdir(broken);
    await writeFile(
      path.join(broken, 'pack.json'),
      JSON.stringify({ format: 'retrace-pack/1', id: 'broken-pack' }),
    );
    const refused = await cli('models', 'import', broken);
    expect(refused.code).not.toBe(0);
    expect(refused.err).toMatch(/pack\.json/);
  });
});
