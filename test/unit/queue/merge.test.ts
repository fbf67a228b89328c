// Report merging (issue 13): shard reports join into what one run would have written, in the
// order a local batch walks the folder; overlaps, missing shards and other packs are refused.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareRelative, mergeReports } from '../../../electron/engine/queue/merge.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'retrace-merge-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const item = (input: string, status = 'ok') => ({ input, status, seconds: 0.5 });

async function report(name: string, body: Record<string, unknown>): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(
    file,
    JSON.stringify({
      summary: {
        model: 'restore-pack',
        started: '2026-01-01T00:00:01.000Z',
        finished: '2026-01-01T00:00:02.000Z',
      },
      cancelled: false,
      seed: 3,
      ...body,
    }),
  );
  return file;
}

describe('compareRelative', () => {
  it('orders as a folder walk does: name by name, a folder before a longer name it prefixes', () => {
    const list = ['a.png', 'a/x.png', 'b c/d.png', 'a b/z.png', 'A.png'];
    expect([...list].sort(compareRelative)).toEqual([
      'A.png',
      'a/x.png',
      'a b/z.png',
      'a.png',
      'b c/d.png',
    ]);
  });
});

describe('mergeReports', () => {
  it('joins shards into one report with the items in walk order and the summary recounted', async () => {
    const a = await report('1.json', {
      shard: { index: 1, count: 2 },
      items: [item('z.png'), item('a/b.png', 'failed')],
    });
    const b = await report('2.json', {
      shard: { index: 2, count: 2 },
      items: [item('a.png'), item('m.png', 'skipped')],
      summary: {
        model: 'restore-pack',
        started: '2026-01-01T00:00:00.000Z',
        finished: '2026-01-01T00:00:09.000Z',
      },
    });
    const out = path.join(dir, 'merged.json');
    const r = await mergeReports([a, b], out);
    const merged = JSON.parse(await readFile(out, 'utf8')) as Record<string, unknown>;
    expect(Object.keys(merged)).toEqual(['summary', 'cancelled', 'seed', 'items']);
    expect(merged.summary).toEqual({
      total: 4,
      ok: 2,
      failed: 1,
      skipped: 1,
      seconds: 9,
      started: '2026-01-01T00:00:00.000Z',
      finished: '2026-01-01T00:00:09.000Z',
      model: 'restore-pack',
    });
    expect(r.items.map((i) => i.input)).toEqual(['a/b.png', 'a.png', 'm.png', 'z.png']);
    expect(await readFile(r.csv, 'utf8')).toMatch(/^input,status,output,error,seconds\r\n/);
  });

  it('refuses overlapping reports, a missing shard, another pack or seed — naming the files', async () => {
    const out = path.join(dir, 'x.json');
    const a = await report('a.json', { shard: { index: 1, count: 3 }, items: [item('p.png')] });
    const b = await report('b.json', { shard: { index: 2, count: 3 }, items: [item('p.png')] });
    const c = await report('c.json', { shard: { index: 3, count: 3 }, items: [item('q.png')] });
    await expect(mergeReports([a, b, c], out)).rejects.toThrow(
      /p\.png is in both .*a\.json and .*b\.json/,
    );
    const b2 = await report('b2.json', { shard: { index: 2, count: 3 }, items: [item('r.png')] });
    await expect(mergeReports([a, c], out)).rejects.toThrow(/shard 2\/3 missing/);
    await expect(mergeReports([a, b2, c], out)).resolves.toMatchObject({ reports: 3 });
    const seed = await report('s.json', { seed: 4, items: [item('s.png')] });
    const plain = await report('p.json', { items: [item('t.png')] });
    await expect(mergeReports([plain, seed], out)).rejects.toThrow(/s\.json: seed 4/);
    const other = await report('o.json', { items: [], summary: { model: 'restore-denoise' } });
    await expect(mergeReports([plain, other], out)).rejects.toThrow(
      /o\.json: restored with pack restore-denoise/,
    );
    await writeFile(path.join(dir, 'bad.json'), '{');
    await expect(mergeReports([path.join(dir, 'bad.json')], out)).rejects.toThrow(
      /bad\.json: cannot read the report \(not JSON\)/,
    );
  });
});
