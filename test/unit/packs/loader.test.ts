// loadPack: a pack folder becomes the descriptor the pipelines take, and every way a pack can be
// broken (bad field, bad JSON, missing file, sha256 mismatch) is refused with a message naming it.
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashCache, sha256File } from '../../../electron/engine/packs/hash.js';
import { loadPack } from '../../../electron/engine/packs/loader.js';
import { makeRestorePack, makeTextPack, sha256Of } from './helpers.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'retrace-packs-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('loadPack', () => {
  it('loads a restoration pack with absolute files and the unet sha256', async () => {
    const dir = await makeRestorePack(root, 'denoise');
    const pack = await loadPack(dir);
    expect(pack.id).toBe('denoise');
    expect(pack.dir).toBe(dir);
    expect(pack.origin).toBe('user');
    expect(pack.files).toEqual({ unet: path.join(dir, 'unet.onnx') });
    expect(pack.unetSha256).toBe(await sha256Of(path.join(dir, 'unet.onnx')));
    expect(pack.manifest.timestepIsIndex).toBe(true);
    expect(pack.loadTokenizer).toBeUndefined();
    expect(pack.cardFile).toBeUndefined();
    expect((await loadPack(dir, { origin: 'bundled' })).origin).toBe('bundled');
  });

  it('loads a text pack: tokenizer on demand, model card and eval file found', async () => {
    const dir = await makeTextPack(root, 'shapes');
    const pack = await loadPack(dir);
    expect(pack.files.textEncoder).toBe(path.join(dir, 'text.onnx'));
    expect(pack.cardFile).toBe(path.join(dir, 'MODEL_CARD.md'));
    expect(pack.evalFile).toBe(path.join(dir, 'eval.json'));
    const tok = await pack.loadTokenizer?.();
    expect(tok?.maxLength).toBe(12);
    expect([...(tok?.encode('a cat') ?? [])]).toEqual([2, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('computes the unet sha256 when the manifest gives none', async () => {
    const dir = await makeRestorePack(root, 'nosha', (m) => {
      m.components = { unet: { file: 'unet.onnx' } };
    });
    expect((await loadPack(dir)).unetSha256).toBe(await sha256Of(path.join(dir, 'unet.onnx')));
  });

  it('names the bad field and the file', async () => {
    const cases: [(m: Record<string, unknown>) => void, string][] = [
      [(m) => ((m.schedule as Record<string, unknown>).betaStart = -1), 'schedule.betaStart:'],
      [(m) => delete m.licence, 'licence:'],
      [(m) => (m.id = 'Bad Id!'), 'id: must be folder-safe'],
      [(m) => (m.format = 'retrace-pack/2'), 'format:'],
      [(m) => (m.extra = 1), 'extra'],
      [(m) => (m.prediction = 'epsilon'), 'prediction: restoration packs predict "resnoise"'],
      [
        (m) => (m.components = { unet: { file: '../escape.onnx' } }),
        'components.unet.file: must be a path inside the pack folder',
      ],
    ];
    for (const [edit, message] of cases) {
      const dir = await makeRestorePack(root, 'badfield', edit);
      const packJson = path.join(dir, 'pack.json');
      await expect(loadPack(dir)).rejects.toThrow(`${packJson}: `);
      await expect(loadPack(dir)).rejects.toThrow(message);
    }
  });

  it('a pack with a text encoder but no tokenizer is refused naming components.tokenizer', async () => {
    const dir = await makeTextPack(root, 'notok');
    const packJson = path.join(dir, 'pack.json');
    const m = JSON.parse(await readFile(packJson, 'utf8'));
    delete m.components.tokenizer;
    await writeFile(packJson, JSON.stringify(m));
    await expect(loadPack(dir)).rejects.toThrow(
      'components.tokenizer: required with a text encoder',
    );
  });

  it('refuses unreadable JSON and a missing pack.json or folder', async () => {
    const dir = await makeRestorePack(root, 'badjson');
    await writeFile(path.join(dir, 'pack.json'), '{ "format": ');
    await expect(loadPack(dir)).rejects.toThrow(`${path.join(dir, 'pack.json')}: not valid JSON`);
    await rm(path.join(dir, 'pack.json'));
    await expect(loadPack(dir)).rejects.toThrow(`${path.join(dir, 'pack.json')}: no such file`);
    await expect(loadPack(path.join(root, 'nowhere'))).rejects.toThrow(
      `${path.join(root, 'nowhere')}: no such pack folder`,
    );
  });

  it('refuses a missing component file, naming it', async () => {
    const dir = await makeRestorePack(root, 'missing');
    await rm(path.join(dir, 'unet.onnx'));
    await expect(loadPack(dir)).rejects.toThrow(
      `components.unet.file: ${path.join(dir, 'unet.onnx')} does not exist`,
    );
    const text = await makeTextPack(root, 'missingtok');
    await rm(path.join(text, 'tokenizer.json'));
    await expect(loadPack(text)).rejects.toThrow(
      /components\.tokenizer\.file: .*tokenizer\.json does not exist/,
    );
  });

  it('refuses a sha256 mismatch with both hashes, unless verification is off', async () => {
    const dir = await makeRestorePack(root, 'tampered');
    const unet = path.join(dir, 'unet.onnx');
    const expected = await sha256Of(unet);
    const bytes = await readFile(unet);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1;
    await writeFile(unet, bytes);
    const actual = await sha256Of(unet);
    await expect(loadPack(dir)).rejects.toThrow(
      `${unet}: sha256 mismatch (pack.json says ${expected}, the file has ${actual})`,
    );
    const unchecked = await loadPack(dir, { verify: false });
    expect(unchecked.unetSha256).toBe(expected);
  });
});

describe('HashCache', () => {
  it('hashes once per (path, size, mtime) and again when the file changes', async () => {
    const file = path.join(root, 'blob.bin');
    await writeFile(file, 'first version');
    // Whole-second mtimes, so that utimes can restore them exactly.
    const mtime = new Date('2026-01-01T00:00:00Z');
    await utimes(file, mtime, mtime);
    const cache = new HashCache();
    const first = await cache.sha256(file);
    expect(first).toBe(await sha256File(file));
    // Same size, same mtime, different bytes: the cache answers without reading.
    await writeFile(file, 'FIRST version');
    await utimes(file, mtime, mtime);
    expect(await cache.sha256(file)).toBe(first);
    // A new mtime makes it hash again.
    const later = new Date(mtime.getTime() + 5000);
    await utimes(file, later, later);
    expect(await cache.sha256(file)).toBe(await sha256File(file));
    expect(await cache.sha256(file)).not.toBe(first);
  });

  it('keeps its entries in a file for the next process', async () => {
    const file = path.join(root, 'blob2.bin');
    const store = path.join(root, 'hash-cache.json');
    await writeFile(file, 'content');
    const mtime = new Date('2026-01-01T00:00:00Z');
    await utimes(file, mtime, mtime);
    const h = await new HashCache(store).sha256(file);
    const saved = JSON.parse(await readFile(store, 'utf8'));
    expect(saved.format).toBe('retrace-hash-cache/1');
    expect(saved.entries[file].sha256).toBe(h);
    // A second cache reads the stored entry: proven by a same-size, same-mtime edit.
    await writeFile(file, 'CONTENT');
    await utimes(file, mtime, mtime);
    expect(await new HashCache(store).sha256(file)).toBe(h);
    // A corrupt store only costs re-hashing.
    await writeFile(store, 'not json');
    expect(await new HashCache(store).sha256(file)).toBe(await sha256File(file));
  });

  it('names a missing file', async () => {
    await expect(new HashCache().sha256(path.join(root, 'none.bin'))).rejects.toThrow(
      `${path.join(root, 'none.bin')}: no such file`,
    );
  });
});
