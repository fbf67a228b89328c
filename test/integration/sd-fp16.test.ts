// Stable Diffusion exports at half precision (issue 11): the tiny SD fixture converted to float16
// by scripts/sd-fixture/to_fp16.py (test/fixtures/tiny-sd-fp16), and a mixed export (fp16 UNet
// and text encoder, fp32 VAE) put together here. Every command works on them; BDIA stays exact
// (its states are float64, the float16 conversion happens at the network boundary only); an
// inversion made in one process replays bit for bit in another; a replay on another precision
// is allowed only when asked and reports the error it got; a folder Retrace cannot run is
// refused at import.
import { spawn } from 'node:child_process';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../electron/cli/main.js';

const fp32 = path.resolve('test/fixtures/tiny-sd');
const fp16 = path.resolve('test/fixtures/tiny-sd-fp16');
const bin = path.resolve('bin/retrace.js');
let work: string;
let photoFile: string;

const common = (user: string) => [
  '--quiet',
  '--provider',
  'cpu',
  '--threads',
  '1',
  '--user-dir',
  user,
];

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main([...common(path.join(work, 'user')), ...argv], {
    out: (s) => out.push(s),
    err: (s) => err.push(s),
    handleSignals: false,
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** The built CLI in a process of its own. */
function cliProcess(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...common(path.join(work, 'user')), ...argv]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

async function pixels(file: string): Promise<Buffer> {
  return sharp(file).raw().toBuffer();
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'retrace-fp16-'));
  photoFile = path.join(work, 'photo.png');
  const w = 96;
  const h = 64;
  const data = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const inside = (x - 40) ** 2 + (y - 30) ** 2 < 400;
      data[i] = inside ? 210 : 40 + x;
      data[i + 1] = inside ? 50 : 90 + y;
      data[i + 2] = inside ? 40 : 160;
    }
  await sharp(data, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(photoFile);
  // A mixed export: half-precision UNet and text encoder, the fp32 VAE of the same model.
  const mixed = path.join(work, 'tiny-sd-mixed');
  await cp(fp16, mixed, { recursive: true });
  for (const vae of ['vae_encoder', 'vae_decoder'])
    await copyFile(path.join(fp32, vae, 'model.onnx'), path.join(mixed, vae, 'model.onnx'));
  // An SD 2-style v-prediction export at half precision (the same network, read as predicting v).
  const vpred = path.join(work, 'tiny-sd-fp16-v');
  await cp(fp16, vpred, { recursive: true });
  const schedulerFile = path.join(vpred, 'scheduler', 'scheduler_config.json');
  const scheduler = JSON.parse(await readFile(schedulerFile, 'utf8')) as Record<string, unknown>;
  await writeFile(schedulerFile, JSON.stringify({ ...scheduler, prediction_type: 'v_prediction' }));
  for (const [folder, id] of [
    [fp32, 'sd32'],
    [fp16, 'sd16'],
    [mixed, 'sdmixed'],
    [vpred, 'sd16v'],
  ] as const) {
    const r = await cli('models', 'import', folder, '--id', id);
    expect(r.code, r.err).toBe(0);
  }
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface InfoJson {
  networks: { network: string; precision: string; inputs: { name: string; type: string }[] }[];
}

describe('float16 Stable Diffusion exports', () => {
  it('models info shows each network’s precision: fp16, fp32, and a mixed export', async () => {
    const precisions = async (id: string) => {
      const r = await cli('models', 'info', id, '--json');
      expect(r.code, r.err).toBe(0);
      const info = JSON.parse(r.out) as InfoJson;
      return Object.fromEntries(info.networks.map((n) => [n.network, n.precision]));
    };
    expect(await precisions('sd16')).toEqual({
      unet: 'fp16',
      textEncoder: 'fp16',
      vaeEncoder: 'fp16',
      vaeDecoder: 'fp16',
    });
    expect(await precisions('sd32')).toEqual({
      unet: 'fp32',
      textEncoder: 'fp32',
      vaeEncoder: 'fp32',
      vaeDecoder: 'fp32',
    });
    expect(await precisions('sdmixed')).toEqual({
      unet: 'fp16',
      textEncoder: 'fp16',
      vaeEncoder: 'fp32',
      vaeDecoder: 'fp32',
    });
    const text = await cli('models', 'info', 'sd16');
    expect(text.out).toMatch(/unet\s+fp16\s+unet\/model\.onnx: sample float16, timestep int64/);
  });

  it('the v-prediction export is read as one', async () => {
    const r = await cli('models', 'info', 'sd16v', '--json');
    const info = JSON.parse(r.out) as { manifest: { prediction: string } };
    expect(info.manifest.prediction).toBe('v_prediction');
  });

  for (const id of ['sd16', 'sdmixed', 'sd16v']) {
    it(`${id}: generate gives an image; the BDIA round trip is exact (≤ 1e-9; it is 0)`, async () => {
      const out = path.join(work, `${id}-gen.png`);
      const g = await cli(
        'generate',
        '--model',
        id,
        '--prompt',
        'a red circle',
        '--steps',
        '8',
        '--seed',
        '3',
        '--out',
        out,
      );
      expect(g.code, g.err).toBe(0);
      const meta = await sharp(out).stats();
      // A real picture, not a blank or NaN-filled frame: channels vary.
      expect(Math.max(...meta.channels.map((c) => c.stdev))).toBeGreaterThan(1);

      const rt = await cli(
        'roundtrip',
        photoFile,
        '--model',
        id,
        '--prompt',
        'a red circle',
        '--steps',
        '20',
        '--strength',
        '0.8',
        '--json',
      );
      expect(rt.code, rt.err).toBe(0);
      const report = JSON.parse(rt.out) as { latentMaxAbsError: number; pixelMaxAbsError: number };
      console.log(
        `${id} round trip: latent ${report.latentMaxAbsError}, pixel ${report.pixelMaxAbsError}`,
      );
      expect(report.latentMaxAbsError).toBeLessThanOrEqual(1e-9);
      expect(report.latentMaxAbsError).toBe(0);
      expect(report.pixelMaxAbsError).toBe(0);
    });
  }

  it('sd16: inverted in one process, replayed in another: latent error 0, the same 8-bit pixels; the file records provider, onnxruntime and precision', async () => {
    const inv = path.join(work, 'p16.inversion.safetensors');
    const a = await cliProcess(
      'invert',
      photoFile,
      '--model',
      'sd16',
      '--prompt',
      'a red circle',
      '--steps',
      '20',
      '--out',
      inv,
    );
    expect(a.code, a.err).toBe(0);
    const same = path.join(work, 'p16-same.png');
    const b = await cliProcess('replay', inv, '--out', same, '--json');
    expect(b.code, b.err).toBe(0);
    const result = JSON.parse(b.out) as { latentMaxAbsError: number; warnings?: string[] };
    expect(result.latentMaxAbsError).toBe(0);
    expect(result.warnings).toBeUndefined();
    expect(b.err).toBe('');
    // The preview invert wrote is the decoded source latent; the replay decodes what it reached.
    expect(
      (await pixels(same)).equals(
        await pixels(inv.replace(/\.inversion\.safetensors$/, '.preview.png')),
      ),
    ).toBe(true);

    const { readInversion } = await import('../../electron/engine/formats/inversion.js');
    const meta = (await readInversion(inv)).meta;
    expect(meta.provider).toBe('cpu');
    expect(meta.precision).toBe('fp16');
    expect(meta.onnxruntime).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('an fp32 inversion replayed on the fp16 export: refused unless asked; then allowed, the error reported on stderr and in --json', async () => {
    const inv = path.join(work, 'p32.inversion.safetensors');
    const a = await cli(
      'invert',
      photoFile,
      '--model',
      'sd32',
      '--prompt',
      'a red circle',
      '--steps',
      '20',
      '--out',
      inv,
    );
    expect(a.code, a.err).toBe(0);
    const refused = await cli('replay', inv, '--model', 'sd16', '--out', path.join(work, 'no.png'));
    expect(refused.code).not.toBe(0);
    expect(refused.err).toMatch(/made with pack 'sd32', not 'sd16'.*--allow-other-pack/);

    const r = await cliProcess(
      'replay',
      inv,
      '--model',
      'sd16',
      '--allow-other-pack',
      '--out',
      path.join(work, 'other.png'),
      '--json',
    );
    expect(r.code, r.err).toBe(0);
    const result = JSON.parse(r.out) as { latentMaxAbsError: number };
    // fp16 rounds each network output to 11 significant bits: the replay cannot land exactly.
    expect(result.latentMaxAbsError).toBeGreaterThan(0);
    expect(r.err).toMatch(/precision fp32 → fp16/);
    expect(r.err).toContain(`landed ${result.latentMaxAbsError.toExponential(2)}`);
  });

  it('a folder whose UNet takes a type Retrace cannot feed is refused at import, naming the file and the input', async () => {
    const bad = path.join(work, 'bf16-sd');
    await cp(fp32, bad, { recursive: true });
    await mkdir(path.join(bad, 'unet'), { recursive: true });
    await copyFile(
      path.resolve('test/fixtures/networks/bf16-unet.onnx'),
      path.join(bad, 'unet', 'model.onnx'),
    );
    const r = await cli('models', 'import', bad, '--id', 'bf16');
    expect(r.code).not.toBe(0);
    expect(r.err).toContain(
      `${path.join(bad, 'unet', 'model.onnx')}: input "sample" is bfloat16, which Retrace cannot feed`,
    );
    const list = await cli('models', 'list', '--json');
    expect(list.out).not.toContain('"bf16"');
  });
});
