// `retrace worker`: takes restore jobs from a BullMQ queue and runs each through the engine's own
// restore stages (`Engine.restorePlan`: the same load → restore → atomic save as a local batch,
// the same per-file seed), so a file gives the same bytes on any worker.
//
// - A bad file (corrupt, unsupported, too large) fails its job once, with the reason a local
//   batch would report (UnrecoverableError: no retries).
// - The job's lock is the worker's lease: kept alive while the file is in hand, lost when the
//   worker dies; another worker's stalled-job check then puts the job back in the queue, up to
//   `maxStalls` times.
// - Stopping (SIGINT/SIGTERM): no new jobs; the files in hand are finished, or after `graceMs`
//   abandoned and handed back to the queue at once. Nothing partial is left: outputs are written
//   atomically, and a retried job first removes what a killed holder may have left.
// - Redis gone for longer than the watch's grace: the files in hand are abandoned, the worker
//   stops with one error; the jobs stay in Redis (locks expire, other workers take them).
import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue, UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import type { Engine } from '../engine.js';
import { describeError, isCancelled } from '../errors.js';
import { PARTIAL_MARKER, type BatchInput } from '../jobs/batch.js';
import { JOB_FORMAT, type RestoreJobData, type RestoreJobResult } from './jobs.js';
import { RedisWatch, scrub, type RedisTarget } from './redis.js';

export interface WorkerOptions {
  target: RedisTarget;
  queueName: string;
  concurrency: number;
  /** How long a job's lock lasts without renewal (ms): a dead worker's file waits this long. */
  leaseMs: number;
  /** How many times a job may be put back after its worker was lost before it fails. */
  maxStalls: number;
  /** How long Redis may be unreachable before the worker stops (ms). */
  redisWaitMs: number;
  /** On stop, how long to let the files in hand finish before handing them back (ms). */
  graceMs: number;
  /** Stop (exit 0) once the queue has had nothing waiting or running for this long (ms). */
  idleExitMs?: number;
  /** Stop when this aborts (the first Ctrl-C / SIGTERM). */
  signal?: AbortSignal;
  /** One line per event (started, restored, failed, handed back…). */
  log: (line: string) => void;
  /** Also per-file progress lines (at most one a second per file). */
  verbose?: boolean;
}

export interface WorkerSummary {
  restored: number;
  failed: number;
  handedBack: number;
  reason: 'signal' | 'idle';
}

function attemptOf(job: Job): number {
  return Math.max(1, job.attemptsStarted || 1);
}

/** Removes the temporary files a killed holder of this output may have left beside it. */
async function removeStalePartials(output: string): Promise<void> {
  const dir = path.dirname(output);
  const prefix = `.${path.basename(output)}${PARTIAL_MARKER}`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(
    names.filter((n) => n.startsWith(prefix)).map((n) => rm(path.join(dir, n), { force: true })),
  );
}

export async function runWorker(engine: Engine, options: WorkerOptions): Promise<WorkerSummary> {
  const { target, log } = options;
  const name = `${os.hostname()}:${process.pid}`;
  const watch = new RedisWatch(target, options.redisWaitMs);
  const active = new Map<string, { controller: AbortController; relative: string }>();
  const summary: WorkerSummary = { restored: 0, failed: 0, handedBack: 0, reason: 'signal' };
  let stopping = false;
  let fatal = false;

  const processor = async (
    job: Job<RestoreJobData, RestoreJobResult>,
    token?: string,
  ): Promise<RestoreJobResult> => {
    const data = job.data;
    const id = job.id ?? '';
    if (data?.v !== JOB_FORMAT) {
      throw new UnrecoverableError(
        `job ${id}: made by another version of retrace (job format ${String(data?.v)}, this worker reads ${JOB_FORMAT})`,
      );
    }
    const controller = new AbortController();
    active.set(id, { controller, relative: data.relative });
    const started = performance.now();
    const attempt = attemptOf(job);
    log(`started ${data.relative}${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
    // Progress lines only for files that take a while (the first after a second).
    let lastProgress = Date.now();
    try {
      const plan = await engine.restorePlan(
        {
          model: data.model,
          inputs: [data.file],
          outputDir: data.outputDir,
          seed: data.params.seed,
          format: data.params.format,
          ...(data.params.tile !== undefined ? { tile: data.params.tile } : {}),
          ...(data.params.overlap !== undefined ? { overlap: data.params.overlap } : {}),
          ...(data.params.steps !== undefined ? { steps: data.params.steps } : {}),
          ...(data.params.deterministic !== undefined
            ? { deterministic: data.params.deterministic }
            : {}),
        },
        {
          onProgress: (e) => {
            const now = Date.now();
            if (now - lastProgress < 1000 && e.step !== e.total) return;
            lastProgress = now;
            if (options.verbose) log(`${data.relative}: ${e.phase} ${e.step}/${e.total}`);
            job.updateProgress({ step: e.step, total: e.total }).catch(() => undefined);
          },
        },
      );
      if (plan.model.source.unetSha256 !== data.pack.unetSha256) {
        // Another worker may have the right pack: an ordinary error, retried with backoff.
        throw new Error(
          `pack ${data.model} on ${name} is not the one the batch was queued with (network sha256 ${plan.model.source.unetSha256.slice(0, 12)}…, queued ${data.pack.unetSha256.slice(0, 12)}…)`,
        );
      }
      const input: BatchInput = { file: data.file, relative: data.relative };
      const relOut = plan.outputName ? plan.outputName(data.relative) : data.relative;
      const output = path.join(plan.outputDir, ...relOut.split('/'));
      if (attempt > 1) await removeStalePartials(output);
      let processed;
      try {
        const loaded = await plan.stages.load(input, controller.signal);
        processed = await plan.stages.process(loaded, input, controller.signal);
      } catch (err) {
        if (isCancelled(err) || controller.signal.aborted) throw err;
        // The same message a local batch reports: the file named once.
        const message = describeError(err);
        throw new UnrecoverableError(
          message.includes(input.file) || message.includes(input.relative)
            ? message
            : `${input.relative}: ${message}`,
        );
      }
      try {
        await plan.stages.save(processed, output, input);
      } catch (err) {
        throw new UnrecoverableError(`${input.relative}: ${describeError(err)}`);
      }
      const seconds = (performance.now() - started) / 1000;
      summary.restored += 1;
      log(`restored ${data.relative} in ${seconds.toFixed(2)} s`);
      return { output, seconds, worker: name };
    } catch (err) {
      if ((isCancelled(err) || controller.signal.aborted) && !fatal) {
        // Stopping: hand the file back so another worker takes it now, not after the lease.
        await job.moveToWait(token);
        summary.handedBack += 1;
        log(`handed back ${data.relative}`);
        throw new WaitingError();
      }
      if (err instanceof UnrecoverableError) {
        summary.failed += 1;
        log(`failed ${data.relative}: ${err.message}`);
      } else if (!fatal) {
        const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
        log(
          `failed ${data.relative}${last ? '' : ' (to be retried)'}: ${scrub(describeError(err), target)}`,
        );
      }
      throw err;
    } finally {
      active.delete(id);
    }
  };

  const worker = new Worker<RestoreJobData, RestoreJobResult>(options.queueName, processor, {
    connection: watch.options(),
    autorun: false,
    concurrency: options.concurrency,
    lockDuration: options.leaseMs,
    stalledInterval: Math.max(500, Math.min(30_000, Math.round(options.leaseMs / 2))),
    maxStalledCount: options.maxStalls,
    // Keep finished jobs: their ids are what makes a second enqueue of the batch a no-op.
    removeOnComplete: { count: Number.MAX_SAFE_INTEGER },
    removeOnFail: { count: Number.MAX_SAFE_INTEGER },
  });
  worker.on('error', (err) => watch.noteError(err));

  const abandon = () => {
    for (const { controller } of active.values()) controller.abort();
  };
  let idleTimer: ReturnType<typeof setInterval> | undefined;
  const closers: (() => Promise<void>)[] = [];
  let stopResolve!: (reason: 'signal' | 'idle') => void;
  const stopRequested = new Promise<'signal' | 'idle'>((resolve) => (stopResolve = resolve));
  const onAbort = () => stopResolve('signal');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) stopResolve('signal');

  try {
    await Promise.race([worker.waitUntilReady(), watch.lost]);
    watch.track(await worker.client);
    const run = worker.run();
    run.catch((err: unknown) => watch.noteError(err));
    log(
      `worker ${name}: taking jobs from queue ${options.queueName} at ${target.display} ` +
        `(concurrency ${options.concurrency}, lease ${options.leaseMs / 1000} s)`,
    );
    if (options.idleExitMs !== undefined) {
      const idleMs = options.idleExitMs;
      const queue = new Queue(options.queueName, { connection: watch.options() });
      queue.on('error', (err) => watch.noteError(err));
      closers.push(() => queue.close());
      let idleSince = Date.now();
      let checking = false;
      idleTimer = setInterval(() => {
        if (active.size > 0) idleSince = Date.now();
        if (active.size > 0 || checking) return;
        checking = true;
        queue
          .getJobCounts('wait', 'active', 'delayed', 'prioritized', 'paused', 'waiting-children')
          .then((counts) => {
            if (Object.values(counts).some((n) => n > 0)) idleSince = Date.now();
            else if (Date.now() - idleSince >= idleMs) stopResolve('idle');
          })
          .catch(() => undefined)
          .finally(() => (checking = false));
      }, 250);
    }
    summary.reason = await Promise.race([stopRequested, watch.lost]);
    stopping = true;
    if (active.size > 0) {
      const files = [...active.values()].map((a) => a.relative).join(', ');
      log(
        options.graceMs > 0
          ? `stopping: finishing ${files} (up to ${options.graceMs / 1000} s), then exiting`
          : `stopping: handing back ${files}`,
      );
    }
    const grace = setTimeout(abandon, options.graceMs);
    try {
      await Promise.race([worker.close(), watch.lost]);
    } finally {
      clearTimeout(grace);
    }
    if (idleTimer) clearInterval(idleTimer);
    await Promise.race([Promise.all(closers.map((c) => c())), watch.lost]);
    watch.stop();
    return summary;
  } catch (err) {
    // Redis is gone: abandon the files in hand (nothing is written for them) and stop.
    fatal = true;
    abandon();
    watch.stop();
    const settle = Date.now() + 5000;
    while (active.size > 0 && Date.now() < settle) await new Promise((r) => setTimeout(r, 20));
    void worker.close(true).catch(() => undefined);
    void worker.disconnect().catch(() => undefined);
    for (const close of closers) void close().catch(() => undefined);
    throw err;
  } finally {
    if (idleTimer) clearInterval(idleTimer);
    options.signal?.removeEventListener('abort', onAbort);
    if (stopping) watch.stop();
  }
}
