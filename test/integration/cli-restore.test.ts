// `retrace restore` on the folders users really have, through the built command in a child
// process: corrupt, empty and absurdly large files, non-images, spaces and non-ASCII names, nested
// folders; then a kill in the middle of a batch and a resume with --skip-existing.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve('.');
const bin = path.join(root, 'bin/retrace.js');
const fixturePack = path.join(root, 'test/fixtures/restore-pack');
const realPack = path.join(root, 'models/packs/restore-denoise');
let work: string;

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [
      bin,
      '--threads',
      '1',
      '--user-dir',
      path.join(work, 'u'),
      ...args,
    ]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function photo(file: string, width: number, height: number, format?: 'jpeg' | 'webp') {
  await mkdir(path.dirname(file), { recursive: true });
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 7)) % 253;
  let img = sharp(data, { raw: { width, height, channels: 3 } });
  img = format === 'jpeg' ? img.jpeg() : format === 'webp' ? img.webp() : img.png();
  await img.toFile(file);
}

/** A PNG whose header declares 40000×40000 pixels (a decompression bomb, refused unread). */
function hugePng(): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(40000, 0);
  ihdr.writeUInt32BE(40000, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

async function digests(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, file)] = createHash('sha256')
      .update(await readFile(file))
      .digest('hex');
  }
  return out;
}

async function partials(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir, { recursive: true })).filter((f) => f.includes('.retrace-partial'));
}

// The compiled CLI the child runs is built by test/global-setup.ts.
beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'retrace-restore-'));
}, 180_000);
afterAll(() => rm(work, { recursive: true, force: true }));

describe('retrace restore on a hostile folder', () => {
  it('restores every good file at its own size and reports every bad one; sources untouched', async () => {
    const src = path.join(work, 'in');
    await photo(path.join(src, 'a b', 'ünï cødé.png'), 45, 31);
    await photo(path.join(src, 'x.jpg'), 64, 40, 'jpeg');
    await photo(path.join(src, 'deep', 'er', 'y.webp'), 23, 57, 'webp');
    await writeFile(
      path.join(src, 'corrupt.png'),
      Buffer.concat([hugePng().subarray(0, 8), Buffer.from('garbage')]),
    );
    await writeFile(path.join(src, 'empty.jpg'), Buffer.alloc(0));
    await writeFile(path.join(src, 'huge.png'), hugePng());
    await writeFile(path.join(src, 'notes.txt'), 'not an image');
    await writeFile(path.join(src, 'deep', 'data.json'), '{}');
    const before = await digests(src);
    const out = path.join(work, 'out');
    const r = await run([
      'restore',
      src,
      '--model',
      fixturePack,
      '--out',
      out,
      '--recursive',
      '--json',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const summary = JSON.parse(r.stdout) as { ok: number; failed: number; report: string };
    expect(summary).toMatchObject({ ok: 3, failed: 3 });
    const report = JSON.parse(await readFile(summary.report, 'utf8')) as {
      items: { input: string; status: string; error?: string }[];
    };
    const status = Object.fromEntries(report.items.map((i) => [i.input, i]));
    expect(Object.keys(status).sort()).toEqual(
      [
        'a b/ünï cødé.png',
        'corrupt.png',
        'deep/er/y.webp',
        'empty.jpg',
        'huge.png',
        'x.jpg',
      ].sort(),
    );
    for (const bad of ['corrupt.png', 'empty.jpg', 'huge.png']) {
      expect(status[bad]?.status).toBe('failed');
      expect(status[bad]?.error).toContain(bad);
    }
    expect(status['huge.png']?.error).toMatch(/40000/);
    for (const [file, w, h] of [
      ['a b/ünï cødé.png', 45, 31],
      ['x.jpg', 64, 40],
      ['deep/er/y.webp', 23, 57],
    ] as const) {
      const meta = await sharp(path.join(out, file)).metadata();
      expect([meta.width, meta.height]).toEqual([w, h]);
    }
    expect(await digests(src)).toEqual(before);
    expect(await partials(out)).toEqual([]);
  });

  it('a kill mid-batch leaves no partial output, and --skip-existing finishes the job', async () => {
    const pack = existsSync(path.join(realPack, 'pack.json')) ? realPack : fixturePack;
    const src = path.join(work, 'batch');
    const count = 12;
    for (let i = 0; i < count; i++)
      await photo(path.join(src, `p${String(i).padStart(2, '0')}.png`), 96, 96);
    const out = path.join(work, 'batch-out');
    const child = spawn(process.execPath, [
      bin,
      '--threads',
      '1',
      '--user-dir',
      path.join(work, 'u'),
      'restore',
      src,
      '--model',
      pack,
      '--out',
      out,
    ]);
    let stderr = '';
    await new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        // Progress lines read "restoring folder CALLS/TOTAL K/N files · name": kill once 3 are done.
        const files = [...stderr.matchAll(/ (\d+)\/\d+ files/g)].map((m) => Number(m[1]));
        if (files.some((k) => k >= 3)) resolve();
      });
      child.on('close', () => resolve());
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('close', resolve));
    const done = (await readdir(out)).filter((f) => f.endsWith('.png'));
    console.log(`killed after ${done.length} of ${count} files (pack ${path.basename(pack)})`);
    expect(done.length).toBeLessThan(count);
    const resumed = await run([
      'restore',
      src,
      '--model',
      pack,
      '--out',
      out,
      '--skip-existing',
      '--json',
    ]);
    expect(resumed.code).toBe(0);
    const summary = JSON.parse(resumed.stdout) as { ok: number; skipped: number; failed: number };
    expect(summary.failed).toBe(0);
    expect(summary.ok + summary.skipped).toBe(count);
    expect(summary.skipped).toBeGreaterThanOrEqual(3);
    expect((await readdir(out)).filter((f) => f.endsWith('.png'))).toHaveLength(count);
    expect(await partials(out)).toEqual([]);
  });

  it('bad options and missing inputs: one line, no stack trace, non-zero exit', async () => {
    const cases = [
      ['restore', path.join(work, 'nope'), '--model', fixturePack, '--out', work],
      ['restore', work, '--model', fixturePack],
      ['restore', work, '--model', fixturePack, '--out', work, '--tile', 'big'],
      ['generate', '--model', 'shapes-missing', '--prompt', 'x', '--out', work],
      [
        'invert',
        path.join(work, 'nope.png'),
        '--model',
        fixturePack,
        '--prompt',
        'x',
        '--out',
        'a.inversion.safetensors',
      ],
      ['replay', path.join(work, 'nope.inversion.safetensors'), '--out', 'x.png'],
    ];
    for (const args of cases) {
      const r = await run(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).not.toMatch(/\n\s+at /);
      const lines = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('(run with --help'));
      expect(lines, args.join(' ')).toHaveLength(1);
    }
  });
});
