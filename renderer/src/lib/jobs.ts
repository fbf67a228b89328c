// Job bookkeeping in the renderer, as a pure reducer over the contract's job events (so it is
// unit-tested without a browser). The reactive store in jobs.svelte.ts wraps it.
import type { JobEvent } from './api.js';
import type { ImageRef } from './api.js';

export type JobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobProgress {
  phase: string;
  step: number;
  total: number;
  detail?: string | undefined;
  etaSeconds?: number | undefined;
  preview?: ImageRef | undefined;
}

export interface JobView {
  jobId: string;
  kind: string;
  label: string;
  status: JobStatus;
  progress?: JobProgress;
  /** Items a batch reported so far (one per file), newest last. */
  items: Record<string, unknown>[];
  result?: Record<string, unknown>;
  error?: string;
  /** How many progress events arrived: the tests watch it move. */
  updates: number;
  startedAt: number;
  endedAt?: number;
}

export function isFinished(status: JobStatus): boolean {
  return status === 'done' || status === 'failed' || status === 'cancelled';
}

/** Applies one event; returns a new job (or the same when the event is not about a known job). */
export function applyJobEvent(job: JobView, event: JobEvent, now = Date.now()): JobView {
  if (event.jobId !== job.jobId || isFinished(job.status)) return job;
  switch (event.type) {
    case 'queued':
      return job;
    case 'progress':
      return { ...job, status: 'running', progress: event.progress, updates: job.updates + 1 };
    case 'item':
      return { ...job, status: 'running', items: [...job.items, event.item] };
    case 'done':
      return { ...job, status: 'done', result: event.result, endedAt: now };
    case 'failed':
      return { ...job, status: 'failed', error: event.error, endedAt: now };
    case 'cancelled':
      return { ...job, status: 'cancelled', endedAt: now };
  }
}

export function newJob(jobId: string, kind: string, label: string, now = Date.now()): JobView {
  return { jobId, kind, label, status: 'queued', items: [], updates: 0, startedAt: now };
}

/** Counts of a batch's items by status, for the overall line of the Restore view. */
export function itemCounts(items: Record<string, unknown>[]): Record<string, number> {
  const counts: Record<string, number> = { ok: 0, failed: 0, skipped: 0 };
  for (const item of items) {
    const s = typeof item.status === 'string' ? item.status : 'unknown';
    counts[s] = (counts[s] ?? 0) + 1;
  }
  return counts;
}

export interface RestoreRow {
  input: string;
  status: string;
  seconds?: number;
  error?: string;
  output?: string;
  url?: string;
}

function toRow(item: Record<string, unknown>): RestoreRow {
  return {
    input: String(item.input ?? ''),
    status: String(item.status ?? ''),
    ...(typeof item.seconds === 'number' ? { seconds: item.seconds } : {}),
    ...(typeof item.error === 'string' ? { error: item.error } : {}),
    ...(typeof item.output === 'string' ? { output: item.output } : {}),
    ...(typeof item.url === 'string' ? { url: item.url } : {}),
  };
}

/** Rows of earlier runs updated by a newer run's items (a resumed batch re-reports skips). */
export function mergeRows(base: RestoreRow[], items: Record<string, unknown>[]): RestoreRow[] {
  const rows = [...base];
  for (const item of items) {
    const row = toRow(item);
    const i = rows.findIndex((r) => r.input === row.input);
    // A resumed batch reports finished files as skipped; the earlier outcome is the real one.
    if (i >= 0 && !(row.status === 'skipped' && rows[i]?.status === 'ok')) rows[i] = row;
    else if (i < 0) rows.push(row);
  }
  return rows;
}
