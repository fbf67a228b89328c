// The job queue: long engine work runs one job at a time (the network saturates the CPU or
// GPU anyway), in arrival order. Every job has an id, reports progress with an ETA, can be
// cancelled while queued or running, and ends with exactly one of done / failed / cancelled.
import { describeError, isCancelled } from '../errors.js';
import type { ProgressEvent } from '../progress.js';

export type JobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobContext {
  signal: AbortSignal;
  onProgress: (event: ProgressEvent) => void;
  /** Emits an intermediate result (e.g. one finished file of a batch, one generated image). */
  emitItem: (item: Record<string, unknown>) => void;
}

export type JobEventOut =
  | { type: 'queued'; jobId: string; kind: string }
  | { type: 'progress'; jobId: string; progress: ProgressEvent & { etaSeconds?: number } }
  | { type: 'item'; jobId: string; item: Record<string, unknown> }
  | { type: 'done'; jobId: string; result: Record<string, unknown> }
  | { type: 'failed'; jobId: string; error: string }
  | { type: 'cancelled'; jobId: string };

export interface JobSummary {
  jobId: string;
  kind: string;
  status: JobStatus;
  progress?: ProgressEvent & { etaSeconds?: number };
  error?: string;
  startedAt?: number;
  endedAt?: number;
}

interface Job extends JobSummary {
  run: (ctx: JobContext) => Promise<Record<string, unknown>>;
  controller: AbortController;
}

/** Estimates the time left in a phase from the pace of its steps so far. */
export class EtaEstimator {
  private phase = '';
  private phaseStart = 0;
  private firstStep = 0;

  update(e: ProgressEvent, now = performance.now()): number | undefined {
    if (e.phase !== this.phase || e.step < this.firstStep) {
      this.phase = e.phase;
      this.phaseStart = now;
      this.firstStep = e.step;
      return undefined;
    }
    const done = e.step - this.firstStep;
    if (done <= 0 || e.total <= e.step) return e.total <= e.step ? 0 : undefined;
    const perStep = (now - this.phaseStart) / 1000 / done;
    return perStep * (e.total - e.step);
  }
}

export class JobQueue {
  private readonly jobs = new Map<string, Job>();
  private readonly pending: Job[] = [];
  private readonly listeners = new Set<(e: JobEventOut) => void>();
  private running: Job | undefined;
  private counter = 0;

  onEvent(listener: (e: JobEventOut) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: JobEventOut): void {
    for (const l of this.listeners) l(e);
  }

  /** Queues a job and returns its id at once. */
  start(kind: string, run: Job['run']): string {
    this.counter += 1;
    const jobId = `job-${Date.now().toString(36)}-${this.counter}`;
    const job: Job = { jobId, kind, status: 'queued', run, controller: new AbortController() };
    this.jobs.set(jobId, job);
    this.pending.push(job);
    this.emit({ type: 'queued', jobId, kind });
    void this.pump();
    return jobId;
  }

  /** Cancels a queued job at once, or a running one at its next network call. */
  cancel(jobId: string): boolean {
    const job = this.jobs.get(jobId);
    if (!job || (job.status !== 'queued' && job.status !== 'running')) return false;
    if (job.status === 'queued') {
      this.pending.splice(this.pending.indexOf(job), 1);
      this.finish(job, 'cancelled');
      this.emit({ type: 'cancelled', jobId });
      return true;
    }
    job.controller.abort();
    return true;
  }

  list(): JobSummary[] {
    return [...this.jobs.values()].map(
      ({ jobId, kind, status, progress, error, startedAt, endedAt }) => ({
        jobId,
        kind,
        status,
        ...(progress ? { progress } : {}),
        ...(error ? { error } : {}),
        ...(startedAt !== undefined ? { startedAt } : {}),
        ...(endedAt !== undefined ? { endedAt } : {}),
      }),
    );
  }

  /** Resolves when nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.running || this.pending.length > 0) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  private finish(job: Job, status: JobStatus, error?: string): void {
    job.status = status;
    job.endedAt = Date.now();
    if (error !== undefined) job.error = error;
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    const job = this.pending.shift();
    if (!job) return;
    this.running = job;
    job.status = 'running';
    job.startedAt = Date.now();
    const eta = new EtaEstimator();
    const ctx: JobContext = {
      signal: job.controller.signal,
      onProgress: (p) => {
        const etaSeconds = eta.update(p);
        job.progress = etaSeconds === undefined ? { ...p } : { ...p, etaSeconds };
        this.emit({ type: 'progress', jobId: job.jobId, progress: job.progress });
      },
      emitItem: (item) => this.emit({ type: 'item', jobId: job.jobId, item }),
    };
    try {
      const result = await job.run(ctx);
      this.finish(job, 'done');
      this.emit({ type: 'done', jobId: job.jobId, result });
    } catch (err) {
      if (job.controller.signal.aborted || isCancelled(err)) {
        this.finish(job, 'cancelled');
        this.emit({ type: 'cancelled', jobId: job.jobId });
      } else {
        const message = describeError(err);
        this.finish(job, 'failed', message);
        this.emit({ type: 'failed', jobId: job.jobId, error: message });
      }
    } finally {
      this.running = undefined;
      setImmediate(() => void this.pump());
    }
  }
}
