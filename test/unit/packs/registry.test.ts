// PackRegistry: finds bundled and user packs, lists broken ones with their error, resolves ids
// and paths, records imports in imports.json (atomically) and forgets them; defaultPackDirs.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPackDirs, PackRegistry } from '../../../electron/engine/packs/loader.js';
import { makeRestorePack, makeTextPack } from './helpers.js';

let root: string;
let bundled: string;
let userDir: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'retrace-registry-'));
  bundled = path.join(root, 'bundled');
  userDir = path.join(root, 'user');
  await makeRestorePack(bundled, 'restore-a');
  await makeTextPack(bundled, 'shapes-b2');
  // Broken: bad JSON, bad sha256, a bad field.
  const badJson = await makeRestorePack(bundled, 'broken-json');
  await writeFile(path.join(badJson, 'pack.json'), '{');
  await makeRestorePack(bundled, 'broken-sha', (m) => {
    m.components = { unet: { file: 'unet.onnx', sha256: '0'.repeat(64) } };
  });
  await makeRestorePack(bundled, 'broken-field', (m) => {
    m.resolution = { default: [64], multipleOf: 8 };
  });
  // The factory's swap folders and a folder with no pack.json are not packs.
  await makeRestorePack(bundled, 'restore-a.tmp', (m) => (m.id = 'restore-a'));
  await mkdir(path.join(bundled, 'notes'), { recursive: true });
  // A user pack.
  await makeRestorePack(path.join(userDir, 'packs'), 'my-restore');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('PackRegistry', () => {
  it('lists every pack, broken ones with their error, sorted by id', async () => {
    const list = await new PackRegistry({ bundledDirs: [bundled], userDir }).list();
    expect(list.map((e) => [e.id, e.origin, e.ok])).toEqual([
      ['broken-field', 'bundled', false],
      ['broken-json', 'bundled', false],
      ['broken-sha', 'bundled', false],
      ['my-restore', 'user', true],
      ['restore-a', 'bundled', true],
      ['shapes-b2', 'bundled', true],
    ]);
    const byId = new Map(list.map((e) => [e.id, e]));
    expect(byId.get('broken-json')?.error).toMatch(/broken-json\/pack\.json: not valid JSON/);
    expect(byId.get('broken-sha')?.error).toMatch(
      /unet\.onnx: sha256 mismatch \(pack\.json says 0{64}/,
    );
    expect(byId.get('broken-field')?.error).toMatch(/resolution\.default/);
    expect(byId.get('broken-field')?.task).toBe('restoration');
    const shapes = byId.get('shapes-b2');
    expect(shapes).toMatchObject({
      name: 'Text shapes-b2',
      task: 'text-to-image',
      space: 'pixel',
      dir: path.join(bundled, 'shapes-b2'),
      defaults: { steps: 20, guidance: 3, gamma: 0.94 },
      resolution: { default: [32, 32], multipleOf: 8 },
      tuning: { method: 'b2-diffurl', base: 'shapes-base' },
    });
    expect(shapes?.error).toBeUndefined();
  });

  it('gets a pack by id or by folder, and names the known ids for an unknown one', async () => {
    const registry = new PackRegistry({ bundledDirs: [bundled], userDir });
    const pack = await registry.get('restore-a');
    expect(pack.origin).toBe('bundled');
    expect(pack.files.unet).toBe(path.join(bundled, 'restore-a', 'unet.onnx'));
    expect((await registry.get('my-restore')).origin).toBe('user');
    expect((await registry.get(path.join(bundled, 'shapes-b2'))).id).toBe('shapes-b2');
    await expect(registry.get('nope')).rejects.toThrow(
      "no pack 'nope' (known: broken-field, broken-json, broken-sha, my-restore, restore-a, shapes-b2)",
    );
    await expect(registry.get('broken-sha')).rejects.toThrow(/sha256 mismatch/);
    await expect(registry.get('broken-json')).rejects.toThrow(/not valid JSON/);
    await expect(registry.get('./no/such/folder')).rejects.toThrow(/no such pack folder/);
    try {
      await registry.get('nope');
    } catch (err) {
      expect((err as { code: string }).code).toBe('BAD_INPUT');
    }
  });

  it('records an imported pack folder in imports.json and lists it from then on', async () => {
    const elsewhere = await makeRestorePack(path.join(root, 'elsewhere'), 'far-pack');
    const registry = new PackRegistry({ bundledDirs: [bundled], userDir });
    const pack = await registry.importFolder(elsewhere);
    expect(pack).toMatchObject({ id: 'far-pack', origin: 'imported' });
    const file = path.join(userDir, 'imports.json');
    const saved = JSON.parse(await readFile(file, 'utf8'));
    expect(saved.format).toBe('retrace-imports/1');
    expect(saved.imports).toMatchObject([{ id: 'far-pack', dir: elsewhere }]);
    expect((await readdir(userDir)).filter((f) => f.includes('partial'))).toEqual([]);
    const next = new PackRegistry({ bundledDirs: [bundled], userDir });
    expect((await next.list()).find((e) => e.id === 'far-pack')).toMatchObject({
      origin: 'imported',
      ok: true,
    });
    // Importing the same folder again replaces its record; an id already taken is refused.
    await next.importFolder(elsewhere);
    expect(JSON.parse(await readFile(file, 'utf8')).imports).toHaveLength(1);
    const clash = await makeRestorePack(path.join(root, 'clash'), 'restore-a');
    await expect(next.importFolder(clash)).rejects.toThrow(
      `pack id 'restore-a' is already used by ${path.join(bundled, 'restore-a')}`,
    );
    // A folder that vanished is listed as broken, not dropped.
    await rm(elsewhere, { recursive: true });
    expect((await next.list()).find((e) => e.id === 'far-pack')).toMatchObject({
      ok: false,
      error: expect.stringMatching(/no such folder/),
    });
    await next.remove('far-pack');
    expect((await next.list()).find((e) => e.id === 'far-pack')).toBeUndefined();
    await expect(next.remove('restore-a')).rejects.toThrow(
      'bundled with Retrace and cannot be removed',
    );
    await expect(next.remove('ghost')).rejects.toThrow("no imported pack 'ghost'");
  });

  it('refuses to import a folder that is not a pack, naming it', async () => {
    const empty = path.join(root, 'empty');
    await mkdir(empty, { recursive: true });
    const registry = new PackRegistry({ bundledDirs: [bundled], userDir });
    await expect(registry.importFolder(empty)).rejects.toThrow(
      `${empty}: neither a Retrace pack (pack.json) nor a diffusers ONNX folder (model_index.json)`,
    );
  });

  it('flags a second pack with the same id, and a corrupt imports.json, without hiding the rest', async () => {
    const other = path.join(root, 'other-bundled');
    await makeRestorePack(other, 'restore-a');
    const user2 = path.join(root, 'user2');
    await mkdir(user2, { recursive: true });
    await writeFile(path.join(user2, 'imports.json'), '{"format": "x"}');
    const list = await new PackRegistry({ bundledDirs: [bundled, other], userDir: user2 }).list();
    const dupes = list.filter((e) => e.id === 'restore-a');
    expect(dupes.map((e) => e.ok)).toEqual([true, false]);
    expect(dupes[1]?.error).toBe(
      `duplicate pack id 'restore-a' (also in ${path.join(bundled, 'restore-a')})`,
    );
    const imports = list.find((e) => e.id === 'imports.json');
    expect(imports?.error).toMatch(/imports\.json: format/);
    expect(list.filter((e) => e.ok).map((e) => e.id)).toEqual(['restore-a', 'shapes-b2']);
  });
});

describe('defaultPackDirs', () => {
  it("finds the repository's models/packs and adds RETRACE_PACKS", () => {
    expect(defaultPackDirs({})).toEqual([path.resolve('models/packs')]);
    const extra = [path.join(root, 'a'), path.join(root, 'b')].join(path.delimiter);
    expect(defaultPackDirs({ RETRACE_PACKS: extra })).toEqual([
      path.resolve('models/packs'),
      path.join(root, 'a'),
      path.join(root, 'b'),
    ]);
  });
});

describe('PackRegistry hash cache', () => {
  it('keeps sha256 results in the user folder for the next process', async () => {
    const user3 = path.join(root, 'user3');
    await new PackRegistry({ bundledDirs: [bundled], userDir: user3 }).get('restore-a');
    const saved = JSON.parse(await readFile(path.join(user3, 'hash-cache.json'), 'utf8'));
    expect(Object.keys(saved.entries)).toContain(path.join(bundled, 'restore-a', 'unet.onnx'));
  });
});
