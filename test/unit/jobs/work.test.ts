// Restore progress in network calls: sized from image headers, one monotonic phase over the
// folder whatever order the batch's own events arrive in.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { measureWork, WorkProgress } from '../../../electron/engine/jobs/work.js';
import type { ProgressEvent } from '../../../electron/engine/progress.js';

const dir = await mkdtemp(path.join(os.tmpdir(), 'retrace-work-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('measureWork', () => {
  it('sizes each file from its header; unreadable and skipped files count 0', async () => {
    const png = (w: number, h: number) =>
      sharp({ create: { width: w, height: h, channels: 3, background: '#808080' } })
        .png()
        .toBuffer();
    await writeFile(path.join(dir, 'a.png'), await png(40, 30));
    await writeFile(path.join(dir, 'b.png'), await png(8, 8));
    await writeFile(path.join(dir, 'bad.png'), 'not a png');
    const inputs = ['a.png', 'b.png', 'bad.png', 'skip.png'].map((relative) => ({
      relative,
      file: path.join(dir, relative),
    }));
    const work = await measureWork(
      inputs,
      (w, h) => w * h,
      async (i) => i.relative === 'skip.png',
    );
    expect([...work]).toEqual([
      ['a.png', 1200],
      ['b.png', 64],
      ['bad.png', 0],
      ['skip.png', 0],
    ]);
  });
});

describe('WorkProgress', () => {
  it('counts calls over the folder, monotonic across overlapping file and batch events', () => {
    const seen: ProgressEvent[] = [];
    const p = new WorkProgress(
      new Map([
        ['a', 10],
        ['b', 5],
        ['c', 0],
      ]),
      (e) => seen.push(e),
    );
    const file = (detail: string, step: number) =>
      p.update({ phase: 'restoring', step, total: 0, detail });
    const done = (detail: string, step: number) =>
      p.update({ phase: 'restoring folder', step, total: 3, detail });
    file('a', 5);
    file('a', 10);
    file('b', 1); // b starts before a's "finished" event arrives (a is saved meanwhile)
    done('a', 1);
    file('b', 5);
    done('c', 2); // a file that failed to load
    done('b', 3);
    expect(seen.map((e) => e.step)).toEqual([5, 10, 11, 11, 15, 15, 15]);
    expect(seen.every((e) => e.total === 15 && e.phase === 'restoring folder')).toBe(true);
    expect(seen.at(-1)?.detail).toBe('3/3 files · b');
    expect(seen[2]?.detail).toBe('0/3 files · b');
  });
});
