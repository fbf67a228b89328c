import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CancelledError } from '../../../electron/engine/errors.js';
import {
  collectInputs,
  PARTIAL_MARKER,
  runBatch,
  type BatchInput,
  type BatchStages,
} from '../../../electron/engine/jobs/batch.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'retrace-batch-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function put(rel: string, content: string): Promise<void> {
  const file = path.join(root, 'in', ...rel.split('/'));
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
}

/** Stages that "restore" by upper-casing text files; files containing "bad" fail. */
function textStages(log: string[] = []): BatchStages<string, string> {
  return {
    async load(input) {
      log.push(`load ${input.relative}`);
      return readFile(input.file, 'utf8');
    },
    async process(text, input) {
      log.push(`process ${input.relative}`);
      if (text.includes('bad')) throw new Error('corrupt data');
      return text.toUpperCase();
    },
    async save(text, output) {
      await mkdir(path.dirname(output), { recursive: true });
      await writeFile(output, text);
    },
  };
}

describe('collectInputs', () => {
  it('keeps images only, recursing when asked, with paths relative to the folder', async () => {
    await put('a.png', 'a');
    await put('notes.txt', 'x');
    await put('sub dir/b.JPG', 'b');
    await put('sub dir/ünï/c.webp', 'c');
    const flat = await collectInputs([path.join(root, 'in')], false);
    expect(flat.map((i) => i.relative)).toEqual(['a.png']);
    const deep = await collectInputs([path.join(root, 'in')], true);
    expect(deep.map((i) => i.relative)).toEqual(['a.png', 'sub dir/b.JPG', 'sub dir/ünï/c.webp']);
  });

  it('names a missing input', async () => {
    await expect(collectInputs([path.join(root, 'nope')], true)).rejects.toThrow(
      /nope: no such file or folder/,
    );
  });
});

describe('runBatch', () => {
  it('records every failure and finishes the rest, mirroring sub-folders', async () => {
    await put('a.png', 'a');
    await put('x/bad.png', 'bad');
    await put('x/y/c.png', 'c');
    const inputs = await collectInputs([path.join(root, 'in')], true);
    const out = path.join(root, 'out');
    const result = await runBatch(inputs, textStages(), { outputDir: out });
    const byInput = Object.fromEntries(result.items.map((i) => [i.input, i]));
    expect(byInput['a.png']?.status).toBe('ok');
    expect(byInput['x/y/c.png']?.status).toBe('ok');
    expect(byInput['x/bad.png']?.status).toBe('failed');
    expect(byInput['x/bad.png']?.error).toMatch(/x\/bad.png: .*corrupt data/);
    expect(await readFile(path.join(out, 'x', 'y', 'c.png'), 'utf8')).toBe('C');
    expect(result.items).toHaveLength(3);
  });

  it('skips outputs that exist and never writes over a source', async () => {
    await put('a.png', 'a');
    await put('b.png', 'b');
    const inputs = await collectInputs([path.join(root, 'in')], false);
    const out = path.join(root, 'out');
    await mkdir(out, { recursive: true });
    await writeFile(path.join(out, 'a.png'), 'done before');
    const result = await runBatch(inputs, textStages(), { outputDir: out, skipExisting: true });
    expect(result.items.map((i) => `${i.input}:${i.status}`).sort()).toEqual([
      'a.png:skipped',
      'b.png:ok',
    ]);
    expect(await readFile(path.join(out, 'a.png'), 'utf8')).toBe('done before');

    const inPlace = await runBatch(inputs, textStages(), { outputDir: path.join(root, 'in') });
    expect(
      inPlace.items.every(
        (i) => i.status === 'failed' && /overwrite its source/.test(i.error ?? ''),
      ),
    ).toBe(true);
    expect(await readFile(path.join(root, 'in', 'a.png'), 'utf8')).toBe('a');
  });

  it('loads the next file before processing the current one', async () => {
    await put('1.png', '1');
    await put('2.png', '2');
    await put('3.png', '3');
    const inputs = await collectInputs([path.join(root, 'in')], false);
    const log: string[] = [];
    await runBatch(inputs, textStages(log), { outputDir: path.join(root, 'out') });
    expect(log.indexOf('load 2.png')).toBeLessThan(log.indexOf('process 1.png'));
    expect(log.indexOf('load 3.png')).toBeLessThan(log.indexOf('process 2.png'));
  });

  it('removes partial files from a killed run and leaves none when cancelled', async () => {
    await put('a.png', 'a');
    await put('b.png', 'b');
    const out = path.join(root, 'out');
    await mkdir(path.join(out, 'sub'), { recursive: true });
    await writeFile(path.join(out, 'sub', `.a.png${PARTIAL_MARKER}-123`), 'half');
    const inputs = await collectInputs([path.join(root, 'in')], false);
    const controller = new AbortController();
    const stages = textStages();
    const cancelling: BatchStages<string, string> = {
      ...stages,
      async process(text, input: BatchInput, signal) {
        if (input.relative === 'b.png') {
          controller.abort();
          throw new CancelledError();
        }
        return stages.process(text, input, signal);
      },
    };
    const result = await runBatch(inputs, cancelling, {
      outputDir: out,
      signal: controller.signal,
    });
    expect(result.cancelled).toBe(true);
    const all = await readdir(out, { recursive: true });
    expect(all.filter((f) => f.includes(PARTIAL_MARKER))).toEqual([]);
    expect(all).not.toContain('b.png');
  });
});
