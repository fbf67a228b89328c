// Shard selection (issue 13): N shards are disjoint and cover every path; `--shard auto` reads
// Slurm's and Kubernetes' variables; bad values are refused in one line naming the option.
import { describe, expect, it } from 'vitest';
import { inShard, parseShard, shardOf } from '../../../electron/engine/queue/shard.js';

const paths = Array.from({ length: 2000 }, (_, i) => `d${i % 7}/photo ${i}.jpg`);

describe('shardOf', () => {
  it('puts every path in exactly one of N shards, about evenly', () => {
    for (const n of [1, 2, 3, 8]) {
      const sizes = new Array<number>(n).fill(0);
      for (const p of paths) {
        const s = shardOf(p, n);
        expect(s >= 1 && s <= n).toBe(true);
        const owners = Array.from({ length: n }, (_, i) => i + 1).filter((i) =>
          inShard(p, { index: i, count: n }),
        );
        expect(owners).toEqual([s]);
        sizes[s - 1] = (sizes[s - 1] ?? 0) + 1;
      }
      for (const size of sizes)
        expect(Math.abs(size - paths.length / n)).toBeLessThan(0.15 * (paths.length / n) + 10);
    }
  });

  it('depends on the path only (pinned)', () => {
    expect(shardOf('a/b.png', 7)).toBe(shardOf('a/b.png', 7));
    expect(paths.slice(0, 8).map((p) => shardOf(p, 4))).toMatchInlineSnapshot(`
      [
        4,
        2,
        4,
        1,
        1,
        1,
        1,
        2,
      ]
    `);
  });
});

describe('parseShard', () => {
  it('reads I/N', () => {
    expect(parseShard('2/8', {})).toEqual({ index: 2, count: 8 });
    expect(parseShard(' 1 / 1 ', {})).toEqual({ index: 1, count: 1 });
  });

  it('refuses what is not a shard, naming the option', () => {
    for (const bad of ['0/3', '4/3', '1/0', 'x', '1/2/3', '-1/2', 'auto/0'])
      expect(() =>
        parseShard(bad, { SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_COUNT: '2' }),
      ).toThrow(/^--shard /);
  });

  it('auto: a Slurm array (any start, with a step)', () => {
    expect(
      parseShard('auto', {
        SLURM_ARRAY_TASK_ID: '0',
        SLURM_ARRAY_TASK_MIN: '0',
        SLURM_ARRAY_TASK_COUNT: '4',
      }),
    ).toEqual({ index: 1, count: 4 });
    expect(
      parseShard('auto', {
        SLURM_ARRAY_TASK_ID: '4',
        SLURM_ARRAY_TASK_MIN: '1',
        SLURM_ARRAY_TASK_COUNT: '4',
      }),
    ).toEqual({ index: 4, count: 4 });
    expect(
      parseShard('auto', {
        SLURM_ARRAY_TASK_ID: '10',
        SLURM_ARRAY_TASK_MIN: '2',
        SLURM_ARRAY_TASK_STEP: '4',
        SLURM_ARRAY_TASK_COUNT: '3',
      }),
    ).toEqual({ index: 3, count: 3 });
    expect(() => parseShard('auto', { SLURM_ARRAY_TASK_ID: '3' })).toThrow(
      /SLURM_ARRAY_TASK_COUNT/,
    );
    expect(() =>
      parseShard('auto', {
        SLURM_ARRAY_TASK_ID: '3',
        SLURM_ARRAY_TASK_MIN: '2',
        SLURM_ARRAY_TASK_STEP: '2',
        SLURM_ARRAY_TASK_COUNT: '3',
      }),
    ).toThrow(/grid/);
  });

  it('auto: a Kubernetes indexed Job, with its count stated', () => {
    expect(parseShard('auto/5', { JOB_COMPLETION_INDEX: '0' })).toEqual({ index: 1, count: 5 });
    expect(parseShard('auto', { JOB_COMPLETION_INDEX: '4', RETRACE_SHARD_COUNT: '5' })).toEqual({
      index: 5,
      count: 5,
    });
    expect(() => parseShard('auto', { JOB_COMPLETION_INDEX: '1' })).toThrow(/auto\/N/);
    expect(() => parseShard('auto/3', { JOB_COMPLETION_INDEX: '3' })).toThrow(
      /not between 1 and 3/,
    );
  });

  it('auto without a scheduler says so', () => {
    expect(() => parseShard('auto', {})).toThrow(
      /neither SLURM_ARRAY_TASK_ID .* nor JOB_COMPLETION_INDEX/,
    );
  });
});
