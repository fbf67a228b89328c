// The engine host's dispatching with a fake engine: request validation, jobs and their events
// (previews and outputs as image references), cancellation, inversion metadata and exports.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelledError } from '../../../electron/engine/errors.js';
import {
  createEngineHost,
  type EngineApi,
  type HostEvent,
} from '../../../electron/engine/host/host.js';

const root = mkdtempSync(path.join(tmpdir(), 'retrace-host-'));
let png: string;
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeAll(async () => {
  png = path.join(root, 'in', 'a.png');
  mkdirSync(path.dirname(png), { recursive: true });
  await sharp({ create: { width: 12, height: 8, channels: 3, background: '#336699' } })
    .png()
    .toFile(png);
});

async function copyPng(to: string): Promise<string> {
  mkdirSync(path.dirname(to), { recursive: true });
  await sharp(png).toFile(to);
  return to;
}

function fakeEngine(): EngineApi {
  return {
    setRuntime: () => undefined,
    listPacks: async () => [{ id: 'p', ok: true }],
    packInfo: async (id) => ({ id }),
    importPack: async (folder) => ({ id: path.basename(folder) }),
    providers: () => ({ candidates: ['cpu'] }),
    async generate(p, out, run) {
      const images = [];
      for (let step = 1; step <= (p.steps ?? 3); step++) {
        if (run.signal?.aborted) throw new CancelledError();
        run.onProgress?.({ phase: 'sampling', step, total: p.steps ?? 3, preview: png });
        await new Promise((r) => setTimeout(r, 5));
      }
      for (let i = 0; i < (p.count ?? 1); i++) {
        const file = await copyPng(path.join(out.dir, `g-${i}.png`));
        images.push({ file, seed: i, width: 12, height: 8 });
      }
      return { images, nfe: 3, seconds: 0.1, params: { prompt: p.prompt } };
    },
    async invertImage() {
      throw new Error('not used');
    },
    async replayInversion() {
      throw new Error('not used');
    },
    async roundtrip() {
      throw new Error('not used');
    },
    async autoMaskImage() {
      throw new Error('not used');
    },
    async restore(p, run) {
      const items = [];
      for (const [i, input] of p.inputs.entries()) {
        const output = path.join(p.outputDir, path.basename(input));
        const item = input.endsWith('bad.png')
          ? { input, status: 'failed' as const, error: 'not an image', seconds: 0 }
          : { input, status: 'ok' as const, output: await copyPng(output), seconds: 0.01 };
        items.push(item);
        run.onItem?.(item, i + 1, p.inputs.length);
      }
      return { items, report: path.join(p.outputDir, 'r.json'), csv: '', cancelled: false };
    },
    close: async () => undefined,
  };
}

function setup() {
  const events: HostEvent['payload'][] = [];
  const host = createEngineHost(fakeEngine(), {
    outputRoot: path.join(root, 'out'),
    post: (e) => events.push(e.payload),
    imageUrl: (f) => `test://${f}`,
  });
  const until = async (type: string) => {
    for (let i = 0; i < 400 && !events.some((e) => e.type === type); i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    await host.idle();
  };
  return { host, events, until };
}

describe('engine host', () => {
  it('runs a job: queued, progress with preview references, done with image references', async () => {
    const { host, events, until } = setup();
    const { jobId } = (await host.handle('jobs:start', {
      kind: 'generate',
      params: { model: 'p', prompt: 'a cat', steps: 3, count: 2 },
    })) as { jobId: string };
    await until('done');
    expect(events[0]).toEqual({ type: 'queued', jobId, kind: 'generate' });
    const progress = events.filter((e) => e.type === 'progress');
    expect(progress).toHaveLength(3);
    expect(progress[0]).toMatchObject({
      progress: {
        phase: 'sampling',
        step: 1,
        total: 3,
        preview: { url: `test://${png}`, width: 12, height: 8 },
      },
    });
    const done = events.at(-1) as unknown as {
      type: string;
      result: { images: { url: string; seed: number }[] };
    };
    expect(done.type).toBe('done');
    expect(done.result.images.map((i) => i.seed)).toEqual([0, 1]);
    expect(done.result.images[0]?.url).toMatch(/^test:\/\/.*generated.*g-0\.png$/);
  });

  it('refuses a bad request naming the field, and unknown channels', async () => {
    const { host } = setup();
    await expect(
      host.handle('jobs:start', {
        kind: 'generate',
        params: { model: 'p', prompt: 'x', steps: 0 },
      }),
    ).rejects.toThrow(/^jobs:start: params\.steps: /);
    await expect(host.handle('shell:run', {})).rejects.toThrow(/unknown channel shell:run/);
    await expect(host.handle('packs:info', { id: 1 })).rejects.toThrow(/packs:info: id/);
  });

  it('cancels a running job at its next step', async () => {
    const { host, events, until } = setup();
    const { jobId } = (await host.handle('jobs:start', {
      kind: 'generate',
      params: { model: 'p', prompt: 'slow', steps: 200 },
    })) as { jobId: string };
    while (!events.some((e) => e.type === 'progress')) await new Promise((r) => setTimeout(r, 2));
    expect(await host.handle('jobs:cancel', { jobId })).toEqual({ cancelled: true });
    await until('cancelled');
    expect(events.at(-1)).toEqual({ type: 'cancelled', jobId });
    expect(events.filter((e) => e.type === 'progress').length).toBeLessThan(200);
    expect(await host.handle('jobs:cancel', { jobId })).toEqual({ cancelled: false });
  });

  it('reports every file of a restore as it finishes, failures included', async () => {
    const { host, events, until } = setup();
    const outputDir = path.join(root, 'restored');
    await host.handle('jobs:start', {
      kind: 'restore',
      params: { model: 'r', inputs: [png, path.join(root, 'bad.png')], outputDir },
    });
    await until('done');
    const items = events.filter((e) => e.type === 'item') as unknown as {
      item: Record<string, unknown>;
    }[];
    expect(items.map((i) => [i.item.status, i.item.done, i.item.total])).toEqual([
      ['ok', 1, 2],
      ['failed', 2, 2],
    ]);
    expect(items[0]?.item.url).toBe(`test://${path.join(outputDir, 'a.png')}`);
    const done = events.at(-1) as unknown as { result: { items: { image?: { width: number } }[] } };
    expect(done.result.items[0]?.image?.width).toBe(12);
  });

  it('reads inversion metadata and refuses files that are not inversions', async () => {
    const { host } = setup();
    const file = path.join(root, 'x.inversion.safetensors');
    const header = Buffer.from(
      JSON.stringify({
        __metadata__: { format: 'retrace-inversion/1', packId: 'p', prompt: 'a cat' },
      }),
    );
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(file, Buffer.concat([size, header]));
    expect(await host.handle('files:inversionInfo', { path: file })).toMatchObject({
      packId: 'p',
      prompt: 'a cat',
    });
    await expect(host.handle('files:inversionInfo', { path: png })).rejects.toThrow(
      /not a safetensors file/,
    );
  });

  it('exports to another format atomically and never over its source', async () => {
    const { host } = setup();
    const destination = path.join(root, 'export.webp');
    expect(
      await host.handle('files:exportImage', {
        source: png,
        destination,
        format: 'webp',
        metadata: { prompt: 'x' },
      }),
    ).toEqual({ path: destination });
    expect((await sharp(destination).metadata()).format).toBe('webp');
    await expect(
      host.handle('files:exportImage', { source: png, destination: png, format: 'png' }),
    ).rejects.toThrow(/overwrite its source/);
    await expect(
      host.handle('files:openImage', { path: path.join(root, 'x.inversion.safetensors') }),
    ).rejects.toThrow(/not an image/);
  });

  it('saves a painted mask (white strokes on transparent) as a grey PNG in the output folder', async () => {
    const { host } = setup();
    // A 20×10 canvas: transparent, with an opaque white block at x 5–14, y 2–7.
    const rgba = Buffer.alloc(20 * 10 * 4);
    for (let y = 2; y < 8; y++)
      for (let x = 5; x < 15; x++) rgba.fill(255, (y * 20 + x) * 4, (y * 20 + x) * 4 + 4);
    const painted = await sharp(rgba, { raw: { width: 20, height: 10, channels: 4 } })
      .png()
      .toBuffer();
    const saved = (await host.handle('files:saveMask', {
      dataUrl: `data:image/png;base64,${painted.toString('base64')}`,
    })) as { path: string; width: number; height: number };
    expect(saved).toMatchObject({ width: 20, height: 10 });
    expect(path.dirname(saved.path)).toBe(path.join(root, 'out', 'masks'));
    const header = await sharp(saved.path).metadata();
    expect([header.format, header.channels]).toEqual(['png', 1]);
    const grey = await sharp(saved.path).extractChannel(0).raw().toBuffer();
    for (let y = 0; y < 10; y++)
      for (let x = 0; x < 20; x++)
        expect(grey[y * 20 + x], `(${x}, ${y})`).toBe(
          x >= 5 && x < 15 && y >= 2 && y < 8 ? 255 : 0,
        );
    const jpeg = await sharp(rgba, { raw: { width: 20, height: 10, channels: 4 } })
      .jpeg()
      .toBuffer();
    await expect(
      host.handle('files:saveMask', {
        dataUrl: `data:image/png;base64,${jpeg.toString('base64')}`,
      }),
    ).rejects.toThrow(/files:saveMask: not a usable mask \(a jpeg image, not PNG\)/);
    await expect(
      host.handle('files:saveMask', { dataUrl: 'data:image/jpeg;base64,AAAA' }),
    ).rejects.toThrow(/files:saveMask: dataUrl/);
  });
});
