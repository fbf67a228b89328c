// The ONNX input reader: names and element types straight from the protobuf, weights skipped;
// files that are not ONNX (or are cut short) are refused with the file named.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readOnnxInputs } from '../../../electron/engine/formats/onnx.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'retrace-onnx-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readOnnxInputs', () => {
  it('reads the inputs of the fixture networks', async () => {
    expect(await readOnnxInputs('test/fixtures/networks/tiny-eps.onnx')).toEqual([
      { name: 'sample', type: 'float32' },
      { name: 'timestep', type: 'int64' },
      { name: 'encoder_hidden_states', type: 'float32' },
    ]);
    expect(await readOnnxInputs('test/fixtures/tiny-sd/text_encoder/model.onnx')).toEqual([
      { name: 'input_ids', type: 'int32' },
    ]);
  });

  it('refuses a file that is not ONNX, or is truncated, naming it', async () => {
    const text = path.join(dir, 'notes.onnx');
    await writeFile(text, 'hello, this is text and not a network');
    await expect(readOnnxInputs(text)).rejects.toThrow(`${text}: not a readable ONNX model`);
    const bytes = await readFile('test/fixtures/networks/tiny-eps.onnx');
    const cut = path.join(dir, 'cut.onnx');
    await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await expect(readOnnxInputs(cut)).rejects.toThrow(`${cut}: not a readable ONNX model`);
    await expect(readOnnxInputs(path.join(dir, 'none.onnx'))).rejects.toThrow(
      /none\.onnx: cannot read \(no such file\)/,
    );
  });
});
