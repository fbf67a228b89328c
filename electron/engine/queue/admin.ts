// `retrace queue status NAME` and `retrace queue cancel NAME`: what a queue holds, and removing
// what no worker has taken yet (the files in hand are finished; `purge` also forgets finished
// jobs, so the same batch can be enqueued again from scratch).
import { Queue } from 'bullmq';
import { RedisWatch, type RedisTarget } from './redis.js';

export interface QueueStatus {
  queue: string;
  redis: string;
  waiting: number;
  active: number;
  delayed: number;
  completed: number;
  failed: number;
  paused: number;
  workers: number | null;
}

async function withQueue<T>(
  target: RedisTarget,
  name: string,
  waitMs: number,
  fn: (queue: Queue) => Promise<T>,
): Promise<T> {
  const watch = new RedisWatch(target, waitMs);
  const queue = new Queue(name, { connection: watch.options() });
  queue.on('error', (err) => watch.noteError(err));
  try {
    const result = await Promise.race([
      (async () => {
        await queue.waitUntilReady();
        watch.track(await queue.client);
        return fn(queue);
      })(),
      watch.lost,
    ]);
    watch.stop();
    await queue.close();
    return result;
  } catch (err) {
    watch.stop();
    void queue.disconnect().catch(() => undefined);
    throw err;
  }
}

export function queueStatus(target: RedisTarget, name: string, waitMs: number) {
  return withQueue(target, name, waitMs, async (queue): Promise<QueueStatus> => {
    const c = await queue.getJobCounts(
      'wait',
      'prioritized',
      'waiting-children',
      'active',
      'delayed',
      'completed',
      'failed',
      'paused',
    );
    // CLIENT LIST may be refused (e.g. a managed Redis): then the worker count is unknown.
    const workers = await queue.getWorkersCount().catch(() => null);
    return {
      queue: name,
      redis: target.display,
      waiting: (c.wait ?? 0) + (c.prioritized ?? 0) + (c['waiting-children'] ?? 0),
      active: c.active ?? 0,
      delayed: c.delayed ?? 0,
      completed: c.completed ?? 0,
      failed: c.failed ?? 0,
      paused: c.paused ?? 0,
      workers,
    };
  });
}

export interface CancelResult {
  queue: string;
  removed: number;
  /** Jobs in workers' hands, left to finish. */
  active: number;
  purged: boolean;
}

export function cancelQueue(
  target: RedisTarget,
  name: string,
  waitMs: number,
  purge: boolean,
): Promise<CancelResult> {
  return withQueue(target, name, waitMs, async (queue) => {
    const c = await queue.getJobCounts('wait', 'prioritized', 'delayed', 'paused', 'active');
    const pending = (c.wait ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) + (c.paused ?? 0);
    if (purge) {
      const total = Object.values(await queue.getJobCounts()).reduce((a, b) => a + b, 0);
      await queue.obliterate({ force: true });
      return { queue: name, removed: total, active: c.active ?? 0, purged: true };
    }
    await queue.drain(true);
    return { queue: name, removed: pending, active: c.active ?? 0, purged: false };
  });
}
