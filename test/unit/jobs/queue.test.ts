import { describe, expect, it } from 'vitest';
import { CancelledError, RetraceError, throwIfAborted } from '../../../electron/engine/errors.js';
import { EtaEstimator, JobQueue, type JobEventOut } from '../../../electron/engine/jobs/queue.js';

const tick = () => new Promise((r) => setTimeout(r, 5));

function collect(queue: JobQueue): JobEventOut[] {
  const events: JobEventOut[] = [];
  queue.onEvent((e) => events.push(e));
  return events;
}

describe('JobQueue', () => {
  it('runs jobs one at a time in arrival order and reports each outcome once', async () => {
    const queue = new JobQueue();
    const events = collect(queue);
    const order: string[] = [];
    const a = queue.start('generate', async (ctx) => {
      order.push('a start');
      ctx.onProgress({ phase: 'sampling', step: 1, total: 2 });
      await tick();
      order.push('a end');
      return { images: 1 };
    });
    const b = queue.start('restore', async () => {
      order.push('b start');
      throw new RetraceError('BAD_FILE', 'photo.jpg: not an image');
    });
    await queue.idle();
    expect(order).toEqual(['a start', 'a end', 'b start']);
    const ends = events.filter((e) => e.type === 'done' || e.type === 'failed');
    expect(ends).toEqual([
      { type: 'done', jobId: a, result: { images: 1 } },
      { type: 'failed', jobId: b, error: 'photo.jpg: not an image' },
    ]);
    expect(queue.list().map((j) => j.status)).toEqual(['done', 'failed']);
  });

  it('cancels a running job at its next check and a queued one at once', async () => {
    const queue = new JobQueue();
    const events = collect(queue);
    let steps = 0;
    const running = queue.start('generate', async (ctx) => {
      for (;;) {
        throwIfAborted(ctx.signal);
        steps += 1;
        await tick();
      }
    });
    const queued = queue.start('generate', async () => ({}));
    await tick();
    expect(queue.cancel(queued)).toBe(true);
    expect(queue.cancel(running)).toBe(true);
    await queue.idle();
    expect(
      events
        .filter((e) => e.type === 'cancelled')
        .map((e) => e.jobId)
        .sort(),
    ).toEqual([queued, running].sort());
    const stepsAtEnd = steps;
    await tick();
    expect(steps).toBe(stepsAtEnd);
    expect(queue.cancel(running)).toBe(false);
  });

  it('treats a CancelledError as a cancel, not a failure', async () => {
    const queue = new JobQueue();
    const events = collect(queue);
    queue.start('x', async () => {
      throw new CancelledError();
    });
    await queue.idle();
    expect(events.at(-1)?.type).toBe('cancelled');
  });
});

describe('EtaEstimator', () => {
  it('extrapolates the pace of the current phase', () => {
    const eta = new EtaEstimator();
    expect(eta.update({ phase: 'sampling', step: 0, total: 10 }, 0)).toBeUndefined();
    expect(eta.update({ phase: 'sampling', step: 2, total: 10 }, 1000)).toBeCloseTo(4);
    expect(eta.update({ phase: 'decoding', step: 0, total: 1 }, 1100)).toBeUndefined();
    expect(eta.update({ phase: 'decoding', step: 1, total: 1 }, 1200)).toBe(0);
  });
});
