// The reactive list of jobs, fed by `jobs:event`. `start` returns the job id and a promise of
// the finished job, so a view can await its own work while the Queue view shows everything.
import { api, type JobEvent, type JobRequest } from './api.js';
import { applyJobEvent, isFinished, newJob, type JobView } from './jobs.js';

class JobsStore {
  list = $state<JobView[]>([]);
  private readonly waiters = new Map<string, (job: JobView) => void>();
  // Events can overtake the reply to jobs:start (the queue announces a job at once).
  private readonly early = new Map<string, JobEvent[]>();
  private attached = false;

  attach(): void {
    if (this.attached) return;
    this.attached = true;
    api().on('jobs:event', (e) => this.apply(e));
  }

  get(jobId: string | undefined): JobView | undefined {
    return jobId ? this.list.find((j) => j.jobId === jobId) : undefined;
  }

  get active(): JobView[] {
    return this.list.filter((j) => !isFinished(j.status));
  }

  private apply(event: JobEvent): void {
    const index = this.list.findIndex((j) => j.jobId === event.jobId);
    if (index < 0) {
      const queue = this.early.get(event.jobId) ?? [];
      queue.push(event);
      this.early.set(event.jobId, queue);
      return;
    }
    const before = this.list[index] as JobView;
    const after = applyJobEvent(before, event);
    if (after === before) return;
    this.list[index] = after;
    if (isFinished(after.status)) {
      this.waiters.get(after.jobId)?.(after);
      this.waiters.delete(after.jobId);
    }
  }

  async start(
    request: JobRequest,
    label: string,
  ): Promise<{ jobId: string; done: Promise<JobView> }> {
    this.attach();
    const { jobId } = await api().invoke('jobs:start', request);
    const done = new Promise<JobView>((resolve) => this.waiters.set(jobId, resolve));
    this.list.push(newJob(jobId, request.kind, label));
    for (const e of this.early.get(jobId) ?? []) this.apply(e);
    this.early.delete(jobId);
    return { jobId, done };
  }

  async cancel(jobId: string): Promise<boolean> {
    const { cancelled } = await api().invoke('jobs:cancel', { jobId });
    return cancelled;
  }

  clearFinished(): void {
    this.list = this.list.filter((j) => !isFinished(j.status));
  }
}

export const jobs = new JobsStore();
