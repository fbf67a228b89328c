// safetensors reader/writer: round trips for every dtype, header validation with the reason, and
// interoperability with the Python `safetensors` library (files it wrote, and files it reads).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
  type Tensor,
} from '../../../electron/engine/formats/safetensors.js';

const PYTHON = path.resolve('models/factory/.venv/bin/python');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'retrace-st-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** A hand-made file: header JSON as given, then `data` bytes. */
function handMade(header: object, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(8);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  return concat([head, json, data]);
}

describe('safetensors', () => {
  it('round-trips every dtype bit for bit, with metadata, through an atomic write', async () => {
    const tensors = new Map<string, Tensor>([
      [
        'f64',
        {
          dtype: 'F64',
          shape: [2, 2],
          data: Float64Array.from([Math.PI, -0, 1e-310, 2 ** 53 + 2]),
        },
      ],
      ['f32', { dtype: 'F32', shape: [3], data: Float32Array.from([1.5, -2.25, NaN]) }],
      ['f16', { dtype: 'F16', shape: [2], data: Uint16Array.from([0x3c00, 0xc000]) }],
      ['i64', { dtype: 'I64', shape: [2], data: BigInt64Array.from([-(2n ** 62n), 7n]) }],
      ['i32', { dtype: 'I32', shape: [1, 1], data: Int32Array.from([-5]) }],
      ['u8', { dtype: 'U8', shape: [5], data: Uint8Array.from([0, 1, 128, 254, 255]) }],
      ['empty', { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) }],
      ['scalar', { dtype: 'F64', shape: [], data: Float64Array.from([42]) }],
    ]);
    const file = path.join(dir, 'all.safetensors');
    await writeSafetensors(file, tensors, { note: 'héllo', n: '1' });
    expect((await readdir(dir)).filter((f) => f.includes('partial'))).toEqual([]);
    const back = await readSafetensors(file);
    expect(back.metadata).toEqual({ note: 'héllo', n: '1' });
    expect([...back.tensors.keys()].sort()).toEqual([...tensors.keys()].sort());
    for (const [name, t] of tensors) {
      const r = back.tensors.get(name) as Tensor;
      expect(r.dtype).toBe(t.dtype);
      expect(r.shape).toEqual(t.shape);
      expect(Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength)).toEqual(
        Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      );
    }
    // Data begins 8-byte aligned, as the Python library writes it.
    const bytes = await readFile(file);
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
  });

  it('refuses bad headers with the reason and the file name', () => {
    const f64 = new Uint8Array(16);
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array(4), /too short for the header length/],
      [handMade({}, new Uint8Array(0)).subarray(0, 9), /truncated: header of 2 bytes/],
      [
        concat([Uint8Array.from([3, 0, 0, 0, 0, 0, 0, 0]), new TextEncoder().encode('abc')]),
        /not UTF-8 JSON/,
      ],
      [handMade([1, 2] as unknown as object, new Uint8Array(0)), /not a JSON object/],
      [
        handMade({ a: { dtype: 'X9', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)),
        /tensor a: unknown dtype "X9"/,
      ],
      [
        handMade({ a: { dtype: 'F64', shape: [3], data_offsets: [0, 16] } }, f64),
        /F64 \[3\] needs 24 bytes, data_offsets give 16/,
      ],
      [
        handMade({ a: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, f64.subarray(0, 10)),
        /truncated: the header describes 16 data bytes, the file has 10/,
      ],
      [
        handMade({ a: { dtype: 'F64', shape: [1], data_offsets: [8, 16] } }, f64),
        /gap before tensor a/,
      ],
      [
        handMade(
          {
            a: { dtype: 'F64', shape: [2], data_offsets: [0, 16] },
            b: { dtype: 'F64', shape: [1], data_offsets: [8, 16] },
          },
          f64,
        ),
        /overlaps/,
      ],
      [
        handMade({ a: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, f64),
        /8 bytes after the last tensor/,
      ],
      [
        handMade({ a: { dtype: 'F64', shape: [-1], data_offsets: [0, 8] } }, f64),
        /shape must be a list of non-negative integers/,
      ],
      [handMade({ __metadata__: { k: 1 } }, new Uint8Array(0)), /__metadata__.k is not a string/],
    ];
    for (const [bytes, reason] of cases) {
      expect(() => parseSafetensors(bytes, 'x.safetensors')).toThrow(
        /^x\.safetensors: not a valid safetensors file/,
      );
      expect(() => parseSafetensors(bytes, 'x.safetensors')).toThrow(reason);
    }
  });

  it('refuses tensors whose data does not match dtype or shape when writing', () => {
    expect(() =>
      serializeSafetensors({ a: { dtype: 'F64', shape: [2], data: new Float32Array(2) } }),
    ).toThrow('tensor a: F64 data must be a Float64Array, got Float32Array');
    expect(() =>
      serializeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }),
    ).toThrow('tensor a: shape [3] has 3 elements, data has 2');
  });

  it('reads files the Python safetensors library wrote (diffusers fixtures)', async () => {
    const file = path.resolve('test/fixtures/diffusers/tiny-eps-ddim-eta0.safetensors');
    const st = await readSafetensors(file);
    expect(st.metadata.scheduler).toBe('DDIMScheduler');
    const sample = st.tensors.get('sample_f64') as Tensor;
    expect(sample.dtype).toBe('F64');
    expect(sample.shape).toEqual([21, 1, 4, 8, 8]);
    const steps = st.tensors.get('timesteps') as Tensor;
    expect(steps.dtype).toBe('I64');
    expect(steps.shape).toEqual([20]);
    // DDIM's leading spacing for 20 of 1000 steps, counting down.
    expect([...(steps.data as BigInt64Array)].slice(0, 3)).toEqual([950n, 900n, 850n]);
    // The float32 and float64 copies of the first sample agree to float32 precision.
    const s32 = st.tensors.get('sample')?.data as Float32Array;
    const s64 = sample.data as Float64Array;
    expect(Math.abs((s32[0] as number) - (s64[0] as number))).toBeLessThan(1e-6);
  });

  it('writes files the Python safetensors library reads back, values and metadata', async (ctx) => {
    if (!existsSync(PYTHON)) {
      ctx.skip(`${PYTHON} is absent (npm run models:setup makes it); Python interop not checked`);
    }
    const file = path.join(dir, 'for-python.safetensors');
    await writeSafetensors(
      file,
      {
        z: { dtype: 'F64', shape: [2, 3], data: Float64Array.from([1, 2, 3, 4, 5, 6.25]) },
        ids: { dtype: 'I32', shape: [2], data: Int32Array.from([-1, 77]) },
        img: { dtype: 'U8', shape: [1, 1, 3], data: Uint8Array.from([1, 2, 3]) },
      },
      { format: 'test', ключ: 'значение' },
    );
    const script = `
import json, sys
from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f:
    out = {"meta": f.metadata(), "t": {k: {"dtype": str(f.get_tensor(k).dtype), "shape": list(f.get_tensor(k).shape), "v": f.get_tensor(k).ravel().tolist()} for k in f.keys()}}
print(json.dumps(out))
`;
    const out = JSON.parse(execFileSync(PYTHON, ['-c', script, file], { encoding: 'utf8' }));
    expect(out.meta).toEqual({ format: 'test', ключ: 'значение' });
    expect(out.t.z).toEqual({ dtype: 'float64', shape: [2, 3], v: [1, 2, 3, 4, 5, 6.25] });
    expect(out.t.ids).toEqual({ dtype: 'int32', shape: [2], v: [-1, 77] });
    expect(out.t.img).toEqual({ dtype: 'uint8', shape: [1, 1, 3], v: [1, 2, 3] });
  });

  it('names the file when it cannot be read', async () => {
    await expect(readSafetensors(path.join(dir, 'missing.safetensors'))).rejects.toThrow(
      /missing\.safetensors: cannot read \(no such file\)/,
    );
    await writeFile(path.join(dir, 'x.bin'), 'hello world');
    await expect(readSafetensors(path.join(dir, 'x.bin'))).rejects.toThrow(
      /x\.bin: not a valid safetensors file/,
    );
  });
});
