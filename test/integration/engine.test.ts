// The engine facade's model cache: a pack asked for again reuses its open model while the pack's
// files are unchanged, and a changed network file is checked again (not served from the cache).
import { cp, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../electron/engine/engine.js';

let work: string;
let pack: string;
let engine: Engine;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'retrace-engine-'));
  pack = path.join(work, 'pixel-pack');
  await cp(path.resolve('test/fixtures/pixel-pack'), pack, { recursive: true });
  engine = new Engine({
    packDirs: [],
    userDir: path.join(work, 'user'),
    runtime: { provider: 'cpu', threads: 1 },
  });
});

afterAll(async () => {
  await engine.close();
  await rm(work, { recursive: true, force: true });
});

describe('Engine.model', () => {
  it('returns the same open model for the same pack', async () => {
    const a = await engine.model(pack);
    const b = await engine.model(pack);
    expect(b).toBe(a);
  });

  it('re-checks a pack whose files changed: a damaged network is refused, not reused', async () => {
    const a = await engine.model(pack);
    // Same content, new modification time: checked again, same content hash, same model.
    const later = new Date(Date.now() + 5000);
    await utimes(path.join(pack, 'unet.onnx'), later, later);
    expect(await engine.model(pack)).toBe(a);
    await writeFile(path.join(pack, 'unet.onnx'), 'not a network');
    await expect(engine.model(pack)).rejects.toThrow(/unet\.onnx.*sha256|sha256.*unet/i);
  });

  it('forgets everything on close: a closed engine opens models afresh', async () => {
    const fresh = path.join(work, 'pixel-pack-2');
    await cp(path.resolve('test/fixtures/pixel-pack'), fresh, { recursive: true });
    const a = await engine.model(fresh);
    await engine.close();
    const b = await engine.model(fresh);
    expect(b).not.toBe(a);
  });
});
