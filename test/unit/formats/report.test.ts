// Batch reports: the JSON summary counts what happened, the CSV beside it quotes by RFC 4180,
// and both appear whole (atomic writes, no temporary files left).
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csvField, writeBatchReport } from '../../../electron/engine/formats/report.js';
import type { BatchItem } from '../../../electron/engine/jobs/batch.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'retrace-report-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const items: BatchItem[] = [
  { input: 'a.png', status: 'ok', output: '/out/a.png', seconds: 1.25 },
  {
    input: 'sub dir/ü, "quoted".jpg',
    status: 'failed',
    error: 'bad file:\nline two, "why"',
    seconds: 0.5,
  },
  { input: 'c.webp', status: 'skipped', output: '/out/c.webp', seconds: 0 },
];

describe('batch report', () => {
  it('writes JSON with a summary and the items, and a CSV beside it', async () => {
    const file = path.join(dir, 'report.json');
    const written = await writeBatchReport(file, {
      items: [...items, undefined],
      started: new Date('2026-11-23T09:00:00Z'),
      finished: '2026-11-23T09:00:10.500Z',
      model: 'restore-noise',
      cancelled: false,
    });
    expect(written).toEqual({ json: file, csv: path.join(dir, 'report.csv') });
    const json = JSON.parse(await readFile(file, 'utf8'));
    expect(json.summary).toEqual({
      total: 3,
      ok: 1,
      failed: 1,
      skipped: 1,
      seconds: 10.5,
      started: '2026-11-23T09:00:00.000Z',
      finished: '2026-11-23T09:00:10.500Z',
      model: 'restore-noise',
    });
    expect(json.cancelled).toBe(false);
    expect(json.items).toEqual(items);
    const csv = await readFile(path.join(dir, 'report.csv'), 'utf8');
    expect(csv).toBe(
      'input,status,output,error,seconds\r\n' +
        'a.png,ok,/out/a.png,,1.250\r\n' +
        '"sub dir/ü, ""quoted"".jpg",failed,,"bad file:\nline two, ""why""",0.500\r\n' +
        'c.webp,skipped,/out/c.webp,,0.000\r\n',
    );
    expect((await readdir(dir)).sort()).toEqual(['report.csv', 'report.json']);
  });

  it('sums item seconds when no start/end is given', async () => {
    const file = path.join(dir, 'r2.json');
    await writeBatchReport(file, { items });
    const json = JSON.parse(await readFile(file, 'utf8'));
    expect(json.summary.seconds).toBeCloseTo(1.75, 12);
    expect(json.summary.model).toBeNull();
  });

  it('quotes only what needs quoting', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('cr\r')).toBe('"cr\r"');
    expect(csvField(undefined)).toBe('');
  });

  it('refuses a report name that is not .json', async () => {
    await expect(writeBatchReport(path.join(dir, 'report.txt'), { items })).rejects.toThrow(
      'report.txt: a report file must end in .json',
    );
  });
});
