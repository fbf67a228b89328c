// `retrace restore … --queue URL`: finds the files as a local batch does (same discovery, filters,
// --skip-existing, shard), enqueues one BullMQ job per file, follows them to the end across every
// worker, and writes the same JSON + CSV report a local batch writes, in the same order.
//
// Following: QueueEvents (a Redis stream) brings completions and failures as they happen; a slow
// reconciliation pass reads the jobs still outstanding, so an event missed during a reconnect or
// a job removed by `retrace queue cancel` is noticed too. Stopping this command (Ctrl-C) leaves
// the jobs queued and the workers going; running it again picks the same jobs up by id.
import { existsSync, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Job, Queue, QueueEvents, type JobsOptions } from 'bullmq';
import type { Engine, RestoreResult } from '../engine.js';
import type { RestoreParams } from '../../contract/jobs.js';
import { describeError } from '../errors.js';
import { writeBatchReport } from '../formats/report.js';
import { collectInputs, removePartialFiles, type BatchInput } from '../jobs/batch.js';
import type { ProgressEvent } from '../progress.js';
import type { ReportItem } from './merge.js';
import { JOB_FORMAT, restoreJobId, type RestoreJobData, type RestoreJobResult } from './jobs.js';
import { RedisWatch, scrub, type RedisTarget } from './redis.js';

export interface ProducerOptions {
  target: RedisTarget;
  queueName: string;
  /** Starts of a job that fail for a reason other than the file (e.g. a worker without the pack). */
  attempts: number;
  redisWaitMs: number;
  select?: (input: BatchInput) => boolean;
  reportExtra?: Record<string, unknown>;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
  onItem?: (item: ReportItem, done: number, total: number) => void;
  log?: (line: string) => void;
  /** How often outstanding jobs are read back (ms; default 2000). */
  reconcileMs?: number;
}

export interface ProducerResult extends RestoreResult {
  items: ReportItem[];
  /** Jobs this run added, and those that were already in the queue under the same id. */
  enqueued: number;
  existing: number;
  /** True when the command stopped following (Ctrl-C) with jobs still outstanding. */
  detached: boolean;
  outstanding: number;
  /** Jobs removed from the queue (`retrace queue cancel`) before they ended. */
  removed: number;
}

type Finished =
  { state: 'completed'; job: Job } | { state: 'failed'; job: Job } | { state: 'gone' };

/** Why a job was started more than once, in words, from BullMQ's counters. */
function retriedNote(job: Job): { attempts: number; retried: string } | undefined {
  const starts = job.attemptsStarted || 1;
  if (starts <= 1) return undefined;
  const lost = job.stalledCounter || 0;
  const other = starts - 1 - lost;
  const parts: string[] = [];
  if (lost > 0)
    parts.push(
      `${lost} worker${lost > 1 ? 's' : ''} stopped holding it (lease expired) and it was taken again`,
    );
  if (other > 0)
    parts.push(`handed back or retried after an error ${other} time${other > 1 ? 's' : ''}`);
  return { attempts: starts, retried: parts.join('; ') || 'started more than once' };
}

async function readState(queue: Queue, id: string): Promise<Finished | { state: 'pending' }> {
  const job = await Job.fromId(queue, id);
  if (!job) return { state: 'gone' };
  if (job.finishedOn === undefined) return { state: 'pending' };
  const state = await job.getState();
  if (state === 'completed') return { state: 'completed', job };
  if (state === 'failed') return { state: 'failed', job };
  return { state: 'pending' };
}

/** Runs `fn` over `list` with at most `width` calls in flight. */
async function eachLimited<T>(
  list: readonly T[],
  width: number,
  fn: (v: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < list.length) await fn(list[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(width, list.length) }, lane));
}

export async function restoreWithQueue(
  engine: Engine,
  p: RestoreParams,
  options: ProducerOptions,
): Promise<ProducerResult> {
  const plan = await engine.restorePlan(p);
  const { params, model, outputDir, outputName } = plan;
  const found = await collectInputs(params.inputs, params.recursive);
  const inputs = options.select ? found.filter(options.select) : found;
  await mkdir(outputDir, { recursive: true });
  const started = new Date();
  // Workers resolve the pack themselves: a folder must be absolute for them.
  const given = path.resolve(params.model);
  const modelRef =
    existsSync(given) && statSync(given).isDirectory() ? given : model.source.id || params.model;
  const sources = new Set(inputs.map((i) => path.resolve(i.file)));

  const items: (ReportItem | undefined)[] = new Array(inputs.length);
  const indexOf = new Map<string, number>();
  const outputs = new Map<string, string>();
  const jobs: { id: string; data: RestoreJobData }[] = [];
  let done = 0;
  let lastDetail = '';
  const record = (index: number, item: ReportItem) => {
    if (items[index]) return;
    items[index] = item;
    done += 1;
    options.onItem?.(item, done, inputs.length);
    options.onProgress?.({
      phase: 'restoring (queue)',
      step: done,
      total: inputs.length,
      detail: lastDetail || item.input,
    });
  };
  for (const [index, input] of inputs.entries()) {
    const relOut = outputName ? outputName(input.relative) : input.relative;
    const output = path.join(outputDir, ...relOut.split('/'));
    if (sources.has(path.resolve(output))) {
      record(index, {
        input: input.relative,
        status: 'failed',
        error: `${output}: the output would overwrite its source; choose another output folder`,
        seconds: 0,
      });
      continue;
    }
    if (params.skipExisting) {
      const there = await stat(output).then(
        (s) => s.isFile(),
        () => false,
      );
      if (there) {
        record(index, { input: input.relative, status: 'skipped', output, seconds: 0 });
        continue;
      }
    }
    const data: RestoreJobData = {
      v: JOB_FORMAT,
      file: input.file,
      relative: input.relative,
      outputDir,
      model: modelRef,
      pack: { id: model.source.id, unetSha256: model.source.unetSha256 },
      params: {
        seed: params.seed,
        format: params.format,
        ...(params.tile !== undefined ? { tile: params.tile } : {}),
        ...(params.overlap !== undefined ? { overlap: params.overlap } : {}),
        ...(params.steps !== undefined ? { steps: params.steps } : {}),
        ...(params.deterministic !== undefined ? { deterministic: params.deterministic } : {}),
      },
    };
    const id = restoreJobId(data, output);
    indexOf.set(id, index);
    outputs.set(id, output);
    jobs.push({ id, data });
  }

  const watch = new RedisWatch(options.target, options.redisWaitMs);
  const connection = watch.options();
  const queue = new Queue<RestoreJobData, RestoreJobResult>(options.queueName, { connection });
  const events = new QueueEvents(options.queueName, { connection });
  queue.on('error', (err) => watch.noteError(err));
  events.on('error', (err) => watch.noteError(err));
  const outstanding = new Set(jobs.map((j) => j.id));
  let enqueued = 0;
  let existing = 0;
  let detached = false;
  let removed = 0;
  let wake: () => void = () => undefined;

  const finish = (id: string, f: Finished) => {
    const index = indexOf.get(id);
    if (index === undefined || !outstanding.has(id)) return;
    const input = inputs[index] as BatchInput;
    outstanding.delete(id);
    if (f.state === 'completed') {
      const r = f.job.returnvalue as RestoreJobResult | null;
      record(index, {
        input: input.relative,
        status: 'ok',
        output: r?.output ?? (outputs.get(id) as string),
        seconds: r?.seconds ?? 0,
        ...retriedNote(f.job),
      });
    } else if (f.state === 'failed') {
      const reason = scrub(f.job.failedReason || 'failed', options.target);
      record(index, {
        input: input.relative,
        status: 'failed',
        error: /stalled more than allowable limit/.test(reason)
          ? `${input.relative}: its worker stopped ${f.job.stalledCounter || ''} times (lease expired each time); not retried again`
          : reason,
        seconds:
          f.job.processedOn && f.job.finishedOn ? (f.job.finishedOn - f.job.processedOn) / 1000 : 0,
        ...retriedNote(f.job),
      });
    } else {
      removed += 1;
      record(index, {
        input: input.relative,
        status: 'failed',
        error: `${input.relative}: cancelled (its job was removed from queue ${options.queueName} before a worker finished it)`,
        seconds: 0,
      });
    }
    if (outstanding.size === 0) wake();
  };
  const settle = (id: string) =>
    readState(queue, id).then((s) => {
      if (s.state !== 'pending') finish(id, s);
    });

  events.on('completed', ({ jobId }) => {
    if (outstanding.has(jobId)) void settle(jobId).catch((e: unknown) => watch.noteError(e));
  });
  events.on('failed', ({ jobId }) => {
    if (outstanding.has(jobId)) void settle(jobId).catch((e: unknown) => watch.noteError(e));
  });
  events.on('active', ({ jobId }) => {
    const index = indexOf.get(jobId);
    if (index !== undefined) lastDetail = (inputs[index] as BatchInput).relative;
  });

  const follow = async (): Promise<void> => {
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    watch.track(await queue.client);
    watch.track(await events.client);
    const jobOptions: JobsOptions = {
      attempts: options.attempts,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: false,
      removeOnFail: false,
    };
    // What the queue already holds under these ids (an earlier enqueue of the same batch).
    const before = new Map<string, Job | undefined>();
    await eachLimited(jobs, 64, async (j) => {
      before.set(j.id, await Job.fromId(queue, j.id));
    });
    const fresh: typeof jobs = [];
    for (const j of jobs) {
      const job = before.get(j.id);
      if (!job) {
        fresh.push(j);
        continue;
      }
      existing += 1;
      if (job.finishedOn === undefined) continue; // waiting or running: follow it
      const state = await job.getState();
      if (state === 'failed') {
        // Run again what failed before, as a local rerun would (its reason may be gone).
        await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      } else if (state === 'completed' && !existsSync(outputs.get(j.id) as string)) {
        // Restored before, but the output is gone since: restore it again.
        await job.remove();
        existing -= 1;
        fresh.push(j);
      }
    }
    for (let i = 0; i < fresh.length; i += 500) {
      const chunk = fresh.slice(i, i + 500);
      await queue.addBulk(
        chunk.map((j) => ({ name: 'restore', data: j.data, opts: { ...jobOptions, jobId: j.id } })),
      );
      enqueued += chunk.length;
    }
    options.log?.(
      `queued ${enqueued} file${enqueued === 1 ? '' : 's'} on ${options.queueName} at ${options.target.display}` +
        (existing > 0 ? ` (${existing} already queued or done)` : '') +
        (inputs.length - jobs.length > 0 ? `; ${inputs.length - jobs.length} not queued` : ''),
    );
    if (outstanding.size > 0 && (await queue.getWorkersCount().catch(() => 1)) === 0)
      options.log?.(
        `no worker is taking jobs from ${options.queueName} yet: start \`retrace worker --queue … --queue-name ${options.queueName}\` where the files can be read`,
      );
    // Jobs that ended before the events were being read.
    await eachLimited([...outstanding], 64, settle);
    const every = options.reconcileMs ?? 2000;
    while (outstanding.size > 0) {
      const woke = new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, every);
      });
      await woke;
      if (outstanding.size === 0 || options.signal?.aborted) break;
      // A bounded slice per pass, so a huge batch costs Redis little while its events flow.
      await eachLimited([...outstanding].slice(0, 500), 32, settle);
    }
  };

  const stopped = new Promise<void>((resolve) => {
    if (options.signal?.aborted) resolve();
    options.signal?.addEventListener(
      'abort',
      () => {
        detached = true;
        wake();
        resolve();
      },
      { once: true },
    );
  });
  try {
    await Promise.race([follow(), stopped, watch.lost]);
    if (options.signal?.aborted) detached = outstanding.size > 0;
  } catch (err) {
    watch.stop();
    void queue.disconnect().catch(() => undefined);
    void events.disconnect().catch(() => undefined);
    throw err;
  }
  watch.stop();
  await Promise.all([events.close(), queue.close()]).catch(() => undefined);

  if (!detached) await removePartialFiles(outputDir);
  // In input order: the order a local batch of the same paths reports.
  const present = items.filter((i): i is ReportItem => i !== undefined);
  const report = path.resolve(params.report ?? path.join(outputDir, 'retrace-report.json'));
  let csv = '';
  if (!detached) {
    const written = await writeBatchReport(report, {
      items: present,
      cancelled: removed > 0,
      model: model.source.id,
      seed: params.seed,
      queue: options.queueName,
      ...(options.reportExtra ?? {}),
      started: started.toISOString(),
      finished: new Date().toISOString(),
    });
    csv = written.csv;
  }
  return {
    items: present,
    report,
    csv,
    cancelled: detached,
    enqueued,
    existing,
    detached,
    outstanding: outstanding.size,
    removed,
  };
}

/** For messages: what went wrong, with any Redis password hidden. */
export function describeQueueError(err: unknown, target: RedisTarget | undefined): string {
  return scrub(describeError(err), target);
}
