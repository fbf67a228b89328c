// Inversion files: a bit-exact F64 round trip, readable by any safetensors reader, and every
// refusal with its reason (not safetensors, damaged, wrong tag, missing field, other pack/grid).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseInversion,
  readInversion,
  writeInversion,
  type Inversion,
} from '../../../electron/engine/formats/inversion.js';
import { readSafetensors, writeSafetensors } from '../../../electron/engine/formats/safetensors.js';

const PYTHON = path.resolve('models/factory/.venv/bin/python');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'retrace-inv-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const LEVELS = [-20, ...Array.from({ length: 40 }, (_, i) => i * 20)];
const UNET = 'ab'.repeat(32);

function sample(): Inversion {
  const n = 4 * 8 * 8;
  const zTop = new Float64Array(n);
  const zNext = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    // Values with full 53-bit mantissas, plus a few awkward ones.
    zTop[i] = Math.sin(i * 12.9898) * 43758.5453;
    zNext[i] = 1 / (i - 100.5);
  }
  zTop[0] = -0;
  zTop[1] = Number.MIN_VALUE;
  zNext[2] = 2 ** 53 + 2;
  return {
    zTop,
    zNext,
    shape: [1, 4, 8, 8],
    preview: {
      data: Uint8Array.from({ length: 4 * 2 * 3 }, (_, i) => i * 10),
      width: 4,
      height: 2,
    },
    meta: {
      packId: 'tiny-sd',
      unetSha256: UNET,
      method: 'bdia',
      gamma: 0.94,
      levels: LEVELS,
      guidance: 3,
      prompt: 'a photo of a cat, «naïve», 日本',
      negativePrompt: '',
      width: 64,
      height: 64,
      sourceSha256: 'cd'.repeat(32),
      engineVersion: '0.1.0',
      createdAt: '2026-11-23T09:00:00.000Z',
      strength: 0.8,
      steps: 50,
    },
  };
}

describe('inversion files', () => {
  it('round-trip the F64 pair bit for bit, with preview and metadata', async () => {
    const inv = sample();
    const file = path.join(dir, 'a.inversion.safetensors');
    await writeInversion(file, inv);
    const back = await readInversion(file, {
      expect: { packId: 'tiny-sd', unetSha256: UNET, levels: LEVELS },
    });
    expect(Buffer.from(back.zTop.buffer)).toEqual(Buffer.from(inv.zTop.buffer));
    expect(Buffer.from(back.zNext.buffer)).toEqual(Buffer.from(inv.zNext.buffer));
    expect(Object.is(back.zTop[0], -0)).toBe(true);
    expect(back.shape).toEqual([1, 4, 8, 8]);
    expect(back.preview).toEqual(inv.preview);
    expect(back.meta).toEqual(inv.meta);
  });

  it('is a plain safetensors file with the documented tensors and metadata', async () => {
    const file = path.join(dir, 'plain.inversion.safetensors');
    await writeInversion(file, sample());
    const st = await readSafetensors(file);
    expect([...st.tensors.keys()]).toEqual(['z_top', 'z_next', 'preview']);
    expect(st.tensors.get('z_top')?.dtype).toBe('F64');
    expect(st.tensors.get('preview')?.dtype).toBe('U8');
    expect(st.tensors.get('preview')?.shape).toEqual([2, 4, 3]);
    expect(st.metadata.format).toBe('retrace-inversion/1');
    expect(JSON.parse(st.metadata.levels as string)).toEqual(LEVELS);
    expect(st.metadata.tensorSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(st.metadata.packId).toBe('tiny-sd');
    expect(st.metadata.gamma).toBe('0.94');
  });

  it('opens in Python safetensors, and is still accepted after Python re-saves it', async (ctx) => {
    if (!existsSync(PYTHON)) {
      ctx.skip(`${PYTHON} is absent (npm run models:setup makes it); Python interop not checked`);
    }
    const inv = sample();
    const file = path.join(dir, 'py.inversion.safetensors');
    const resaved = path.join(dir, 'py-resaved.inversion.safetensors');
    await writeInversion(file, inv);
    const script = [
      'import sys',
      'from safetensors import safe_open',
      'from safetensors.numpy import save_file',
      'with safe_open(sys.argv[1], "np") as f:',
      '    meta = f.metadata()',
      '    tensors = {k: f.get_tensor(k) for k in f.keys()}',
      'print(meta["format"], meta["packId"], tensors["z_top"].dtype, list(tensors["z_top"].shape))',
      'save_file(tensors, sys.argv[2], metadata=meta)',
    ].join('\n');
    const out = execFileSync(PYTHON, ['-c', script, file, resaved], { encoding: 'utf8' });
    expect(out.trim()).toBe('retrace-inversion/1 tiny-sd float64 [1, 4, 8, 8]');
    const back = await readInversion(resaved, { expect: { packId: 'tiny-sd', levels: LEVELS } });
    expect(Buffer.from(back.zTop.buffer)).toEqual(Buffer.from(inv.zTop.buffer));
    expect(back.meta).toEqual(inv.meta);
  });

  it('refuses any one-byte change anywhere in the file', async () => {
    const file = path.join(dir, 'flip.inversion.safetensors');
    await writeInversion(file, sample());
    const bytes = await readFile(file);
    const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
    // Every header byte (length, JSON, padding) and a spread of tensor bytes.
    const positions = [...Array.from({ length: headerEnd }, (_, i) => i)];
    for (let i = headerEnd; i < bytes.length; i += 97) positions.push(i);
    positions.push(bytes.length - 1);
    let refused = 0;
    for (const at of positions) {
      const copy = Buffer.from(bytes);
      copy[at] = (copy[at] as number) ^ 0x01;
      expect(() => parseInversion(copy, 'flipped.inversion'), `byte ${at}`).toThrow(
        /^flipped\.inversion: /,
      );
      refused += 1;
    }
    expect(refused).toBe(positions.length);
    // And through the file reader.
    const copy = Buffer.from(bytes);
    copy[20] = (copy[20] as number) ^ 0x01;
    await writeFile(file, copy);
    await expect(readInversion(file)).rejects.toThrow(/flip\.inversion\.safetensors: /);
  });

  it('says "damaged" when the tensor bytes change, and when the file is truncated', async () => {
    const file = path.join(dir, 'd.inversion.safetensors');
    await writeInversion(file, sample());
    const bytes = await readFile(file);
    const copy = Buffer.from(bytes);
    copy[copy.length - 100] = (copy[copy.length - 100] as number) ^ 0x80;
    await writeFile(file, copy);
    await expect(readInversion(file)).rejects.toThrow(
      /damaged inversion file \(tensor bytes hash to [0-9a-f]{64}, the file records [0-9a-f]{64}\)/,
    );
    await writeFile(file, bytes.subarray(0, bytes.length - 10));
    await expect(readInversion(file)).rejects.toThrow(/truncated/);
  });

  it('refuses files that are not safetensors or not inversions', async () => {
    const notSt = path.join(dir, 'photo.inversion.safetensors');
    await writeFile(notSt, Buffer.from('\x89PNG\r\n\x1a\n0000000000000'));
    await expect(readInversion(notSt)).rejects.toThrow(
      /photo\.inversion\.safetensors: not a valid safetensors file/,
    );
    const model = path.join(dir, 'model.safetensors');
    await writeSafetensors(model, { w: { dtype: 'F32', shape: [1], data: new Float32Array(1) } });
    await expect(readInversion(model)).rejects.toThrow(
      /model\.safetensors: not an inversion file \(no "format"/,
    );
    const other = path.join(dir, 'other.safetensors');
    await writeSafetensors(
      other,
      { w: { dtype: 'F32', shape: [1], data: new Float32Array(1) } },
      { format: 'pt' },
    );
    await expect(readInversion(other)).rejects.toThrow(
      'not a retrace-inversion/1 file (format is "pt")',
    );
    await expect(readInversion(path.join(dir, 'nope.safetensors'))).rejects.toThrow(
      /nope\.safetensors: cannot read \(no such file\)/,
    );
  });

  /** Rewrites a file's metadata the way a careless tool would: valid hashes, `edit` applied. */
  async function rewriteMetadata(file: string, edit: (m: Record<string, string>) => void) {
    const st = await readSafetensors(file);
    const { metaSha256: _m, ...rest } = st.metadata;
    edit(rest);
    const { createHash } = await import('node:crypto');
    const entries = Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const metaSha256 = createHash('sha256').update(JSON.stringify(entries)).digest('hex');
    await writeSafetensors(file, st.tensors, { ...rest, metaSha256 });
  }

  it('refuses a file with a missing field, naming it', async () => {
    const file = path.join(dir, 'missing.inversion.safetensors');
    await writeInversion(file, sample());
    await rewriteMetadata(file, (m) => delete m.prompt);
    await expect(readInversion(file)).rejects.toThrow('inversion metadata has no "prompt" field');
  });

  it('records the BDIA lattice, and refuses a file made on none or on another', async () => {
    const file = path.join(dir, 'lattice.inversion.safetensors');
    await writeInversion(file, sample());
    expect((await readSafetensors(file)).metadata.lattice).toBe('2^-40');
    await rewriteMetadata(file, (m) => delete m.lattice);
    await expect(readInversion(file)).rejects.toThrow(
      /no "lattice" field: .*exact only to ~1e-15.*invert the photo again/,
    );
    await rewriteMetadata(file, (m) => (m.lattice = '2^-30'));
    await expect(readInversion(file)).rejects.toThrow(/on lattice 2\^-30, .* exactly on 2\^-40/);
  });

  it('refuses another pack, another unet, another grid, with both sides named', async () => {
    const file = path.join(dir, 'm.inversion.safetensors');
    await writeInversion(file, sample());
    await expect(readInversion(file, { expect: { packId: 'shapes-b2' } })).rejects.toThrow(
      "made with pack 'tiny-sd', not 'shapes-b2'",
    );
    await expect(readInversion(file, { expect: { unetSha256: 'ef'.repeat(32) } })).rejects.toThrow(
      `unet sha256 ${UNET}, this pack has ${'ef'.repeat(32)}`,
    );
    const other = LEVELS.map((l) => l + 1);
    await expect(readInversion(file, { expect: { levels: other } })).rejects.toThrow(
      /made on another timestep grid \(41 levels \[-20, 0, 20, …, 760, 780\]; expected 41 levels \[-19, 1, 21/,
    );
    await expect(readInversion(file, { expect: { levels: LEVELS.slice(1) } })).rejects.toThrow(
      /another timestep grid/,
    );
    try {
      await readInversion(file, { expect: { packId: 'x' } });
    } catch (err) {
      expect((err as { code: string }).code).toBe('MISMATCH');
    }
  });

  it('keeps the source latent bit for bit and the runtime it was made on; refuses a source latent of another shape', async () => {
    const inv = sample();
    inv.zSource = Float64Array.from(inv.zTop, (v, i) => v / 3 + i);
    inv.meta.provider = 'cuda';
    inv.meta.onnxruntime = '1.30.0';
    inv.meta.precision = 'fp16';
    const file = path.join(dir, 'src.inversion.safetensors');
    await writeInversion(file, inv);
    const back = await readInversion(file);
    expect(Buffer.from(back.zSource?.buffer ?? new ArrayBuffer(0))).toEqual(
      Buffer.from(inv.zSource.buffer),
    );
    expect(back.meta).toEqual(inv.meta);
    const st = await readSafetensors(file);
    expect([...st.tensors.keys()]).toEqual(['z_top', 'z_next', 'z_source', 'preview']);

    // A z_source that does not match z_top's shape: refused at write, and at read.
    await expect(
      writeInversion(path.join(dir, 'bad.inversion.safetensors'), {
        ...inv,
        zSource: new Float64Array(3),
      }),
    ).rejects.toThrow(/source latent has 3 values/);
    const tensors = new Map(st.tensors);
    tensors.set('z_source', { dtype: 'F64', shape: [1, 4, 4, 4], data: new Float64Array(64) });
    const forged = path.join(dir, 'forged.safetensors');
    await writeSafetensors(forged, tensors, st.metadata);
    await expect(readInversion(forged)).rejects.toThrow();
  });

  it('refuses to write a pair that does not fit its shape', async () => {
    const inv = sample();
    inv.shape = [1, 4, 8, 9];
    await expect(writeInversion(path.join(dir, 'bad.inversion.safetensors'), inv)).rejects.toThrow(
      'shape [1, 4, 8, 9] needs 288',
    );
  });
});
