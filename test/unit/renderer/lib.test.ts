import { describe, expect, it } from 'vitest';
import {
  basename,
  formatError,
  formatEta,
  formatSeconds,
  percent,
} from '../../../renderer/src/lib/format.js';
import { History } from '../../../renderer/src/lib/history.js';
import {
  applyJobEvent,
  itemCounts,
  mergeRows,
  newJob,
  type JobView,
} from '../../../renderer/src/lib/jobs.js';
import { alignmentGain, tuningSummary } from '../../../renderer/src/lib/packs.js';

describe('edit history', () => {
  it('undoes and redoes, and a new edit after an undo drops the undone branch', () => {
    const h = new History<string>();
    expect(h.current).toBeUndefined();
    h.reset('source');
    h.push('a');
    h.push('b');
    expect(h.undo()).toBe('a');
    expect(h.undo()).toBe('source');
    expect(h.canUndo).toBe(false);
    expect(h.undo()).toBe('source');
    expect(h.redo()).toBe('a');
    h.push('c');
    expect(h.canRedo).toBe(false);
    expect(h.size).toBe(3);
    expect(h.undo()).toBe('a');
    expect(h.redo()).toBe('c');
  });
});

describe('job reducer', () => {
  const base = (): JobView => newJob('job-1', 'generate', 'Generate', 1000);
  it('moves queued → running on progress and counts updates', () => {
    let j = base();
    j = applyJobEvent(j, {
      type: 'progress',
      jobId: 'job-1',
      progress: { phase: 'sampling', step: 1, total: 8 },
    });
    j = applyJobEvent(j, {
      type: 'progress',
      jobId: 'job-1',
      progress: { phase: 'sampling', step: 2, total: 8, etaSeconds: 3 },
    });
    expect(j.status).toBe('running');
    expect(j.updates).toBe(2);
    expect(j.progress?.etaSeconds).toBe(3);
  });
  it('collects batch items and ends exactly once', () => {
    let j = base();
    j = applyJobEvent(j, { type: 'item', jobId: 'job-1', item: { input: 'a.png', status: 'ok' } });
    j = applyJobEvent(j, { type: 'failed', jobId: 'job-1', error: 'boom' }, 2000);
    const after = applyJobEvent(j, { type: 'done', jobId: 'job-1', result: {} });
    expect(after).toBe(j);
    expect(j).toMatchObject({
      status: 'failed',
      error: 'boom',
      endedAt: 2000,
      items: [{ input: 'a.png' }],
    });
  });
  it('ignores events about other jobs', () => {
    const j = base();
    expect(applyJobEvent(j, { type: 'cancelled', jobId: 'job-2' })).toBe(j);
  });
  it('merges a resumed batch: skips do not hide earlier results', () => {
    const first = mergeRows(
      [],
      [
        { input: 'a.png', status: 'ok', seconds: 1 },
        { input: 'b.png', status: 'failed', error: 'bad', seconds: 0.1 },
      ],
    );
    const resumed = mergeRows(first, [
      { input: 'a.png', status: 'skipped', seconds: 0 },
      { input: 'b.png', status: 'failed', error: 'still bad', seconds: 0.1 },
      { input: 'c.png', status: 'ok', seconds: 2 },
    ]);
    expect(resumed.map((r) => `${r.input}:${r.status}`)).toEqual([
      'a.png:ok',
      'b.png:failed',
      'c.png:ok',
    ]);
    expect(resumed[1]?.error).toBe('still bad');
    expect(itemCounts(resumed as unknown as Record<string, unknown>[])).toMatchObject({
      ok: 2,
      failed: 1,
      skipped: 0,
    });
  });
});

describe('formatting', () => {
  it('formats durations, ETAs, errors and names', () => {
    expect(formatSeconds(0.25)).toBe('250 ms');
    expect(formatSeconds(12.34)).toBe('12.3 s');
    expect(formatSeconds(125)).toBe('2 min 5 s');
    expect(formatSeconds(undefined)).toBe('—');
    expect(formatEta(undefined)).toBe('estimating…');
    expect(formatEta(30)).toBe('about 30.0 s left');
    expect(formatError(0)).toBe('0');
    expect(formatError(3.2e-13)).toBe('3.20e-13');
    expect(formatError(0.25)).toBe('0.2500');
    expect(basename('C:\\photos\\cat.png')).toBe('cat.png');
    expect(basename('/a/b/c.webp')).toBe('c.webp');
    expect(percent(3, 4)).toBe(75);
    expect(percent(1, 0)).toBe(0);
  });
});

describe('tuning provenance', () => {
  it('says which method tuned the pack, from what, and the alignment gain in points', () => {
    expect(
      tuningSummary({
        method: 'b2-diffurl',
        base: 'shapes-base',
        metrics: { alignment_base: 0.61, alignment_tuned: 0.7 },
      }),
    ).toBe('tuned with B²-DiffuRL from shapes-base, +9.0 points alignment');
    expect(
      tuningSummary({
        method: 'b2-diffurl',
        base: 'shapes-base',
        metrics: { alignmentGainPoints: 4.25 },
      }),
    ).toBe('tuned with B²-DiffuRL from shapes-base, +4.3 points alignment');
    expect(tuningSummary({ method: 'other', metrics: {} })).toBe('tuned with other');
    expect(tuningSummary(undefined)).toBe('');
    expect(alignmentGain({ reward: 1 })).toBeUndefined();
  });
});

describe('model card markdown', () => {
  it('reads headings, tables with alignment, lists, code and inline marks — as data, not HTML', async () => {
    const { parseMarkdown } = await import('../../../renderer/src/lib/markdown.js');
    const blocks = parseMarkdown(
      [
        '# Card <script>alert(1)</script>',
        '',
        'Removes **noise** in `5` calls, see [the paper](https://x.org).',
        '',
        '| method | PSNR |',
        '|---|---:|',
        '| BM3D | 39.37 |',
        '',
        '- one',
        '- two',
        '',
        '```',
        'retrace restore x',
        '```',
      ].join('\n'),
    );
    expect(blocks.map((b) => b.kind)).toEqual(['heading', 'paragraph', 'table', 'list', 'code']);
    expect(blocks[0]).toMatchObject({
      level: 1,
      text: [{ kind: 'text', text: 'Card <script>alert(1)</script>' }],
    });
    expect(blocks[1]).toMatchObject({
      text: [
        { kind: 'text', text: 'Removes ' },
        { kind: 'strong', text: 'noise' },
        { kind: 'text', text: ' in ' },
        { kind: 'code', text: '5' },
        { kind: 'text', text: ' calls, see the paper.' },
      ],
    });
    expect(blocks[2]).toMatchObject({
      align: ['left', 'right'],
      rows: [[[{ text: 'BM3D' }], [{ text: '39.37' }]]],
    });
    expect(blocks[4]).toEqual({ kind: 'code', text: 'retrace restore x' });
  });
  it('strips links exactly as the old pattern did, on 20 000 random strings', async () => {
    const { stripLinks } = await import('../../../renderer/src/lib/markdown.js');
    // The quadratic regex is the specification on short strings, where its cost does not matter.
    const spec = (t: string) => t.replace(/!?\[([^\]]*)\]\(([^)]*)\)/g, '$1');
    const alphabet = ['[', ']', '(', ')', '!', 'a', ' '];
    let state = 12345;
    const rand = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state >>> 16;
    };
    const differ: string[] = [];
    for (let n = 0; n < 20_000; n += 1) {
      const len = rand() % 16;
      let t = '';
      for (let k = 0; k < len; k += 1) t += alphabet[rand() % alphabet.length];
      if (stripLinks(t) !== spec(t)) differ.push(t);
    }
    expect(differ).toEqual([]);
  });
  it('reads a table-looking line without a rule as text (it used to loop forever)', async () => {
    const { parseMarkdown } = await import('../../../renderer/src/lib/markdown.js');
    expect(parseMarkdown('| a |\nnot a rule\n\n# h')).toEqual([
      { kind: 'paragraph', text: [{ kind: 'text', text: '| a | not a rule' }] },
      { kind: 'heading', level: 1, text: [{ kind: 'text', text: 'h' }] },
    ]);
  });
  it('reads 200 KB hostile cards in linear time (each well under 100 ms)', async () => {
    const { parseMarkdown } = await import('../../../renderer/src/lib/markdown.js');
    const n = 200 * 1024;
    const hostile: Record<string, string> = {
      'images opened, never closed': '!['.repeat(n / 2),
      'links opened, never closed': '['.repeat(n),
      'link text closed, no target': '[a]('.repeat(n / 4),
      'table rule of spaces': `| a |\n|---${' '.repeat(n)}x`,
      'table rule of dashes': `| a |\n|${'-'.repeat(n)}x`,
      'heading of spaces and a line separator': `#${' '.repeat(n)}\u2028x`,
      'list item of spaces': `-${' '.repeat(n)}\u2029x`,
      'unclosed emphasis and code': '*a_b`'.repeat(n / 5),
      'bold never closed': `**${'a*'.repeat(n / 2)}`,
    };
    // A linear parse of 200 KB takes a few milliseconds; the quadratic one took seconds for
    // 40 KB. 100 ms is the acceptance bound, far from both.
    for (const [name, text] of Object.entries(hostile)) {
      parseMarkdown(text.slice(0, 1000)); // warm the code paths
      const t0 = performance.now();
      parseMarkdown(text);
      const ms = performance.now() - t0;
      expect(ms, `${name}: ${ms.toFixed(1)} ms`).toBeLessThan(100);
    }
  });
  it('summarises eval.json metrics as dotted rows', async () => {
    const { evalSummary } = await import('../../../renderer/src/lib/packs.js');
    expect(
      evalSummary({ training: { step: 1 }, metrics: { sigma15: { psnr: 39.3712, ssim: 0.95 } } }),
    ).toEqual([
      ['sigma15.psnr', '39.37'],
      ['sigma15.ssim', '0.9500'],
    ]);
  });
  it('lists each network with its precision and inputs → outputs, skipping malformed entries', async () => {
    const { networkRows } = await import('../../../renderer/src/lib/packs.js');
    expect(
      networkRows([
        {
          network: 'unet',
          precision: 'fp16',
          inputs: [
            { name: 'sample', type: 'float16' },
            { name: 'timestep', type: 'int64' },
          ],
          outputs: [{ name: 'out_sample', type: 'float16' }],
        },
        { network: 'vaeDecoder' },
        'junk',
        { network: 'textEncoder', precision: 'fp32', inputs: [{ name: 1 }], outputs: 'x' },
      ]),
    ).toEqual([
      {
        network: 'unet',
        precision: 'fp16',
        io: 'sample float16, timestep int64 → out_sample float16',
      },
      { network: 'textEncoder', precision: 'fp32', io: ' → ' },
    ]);
    expect(networkRows(undefined)).toEqual([]);
  });
});
