// What one queued restore job carries, and its id. The id is a digest of everything that decides
// the output bytes and where they go — the file (source folder and relative path), the output
// file, the pack (id and network digest) and the restore parameters — so enqueuing the same batch
// twice names the same jobs, and BullMQ keeps one job per id: no file is restored twice.
import { createHash } from 'node:crypto';

/** Bumped when the job data or the way ids are made changes incompatibly. */
export const JOB_FORMAT = 1;

export interface RestoreJobParams {
  seed: number;
  format: 'same' | 'png' | 'jpeg' | 'webp' | 'tiff' | 'avif';
  tile?: number;
  overlap?: number;
  steps?: number;
  deterministic?: boolean;
}

export interface RestoreJobData {
  v: number;
  /** Absolute path of the source (the disk is shared: workers read it where the producer found it). */
  file: string;
  /** Path relative to the folder the user named, '/'-separated: the report's key and the seed's. */
  relative: string;
  /** The output folder (absolute); the file's output is `outputDir/relative` (extension per format). */
  outputDir: string;
  /** The pack as the producer resolved it: an id, or an absolute folder. */
  model: string;
  /** The pack every worker must have: its id and the digest of its network. */
  pack: { id: string; unetSha256: string };
  params: RestoreJobParams;
}

/** What a worker returns for a restored file (BullMQ keeps it as the job's return value). */
export interface RestoreJobResult {
  output: string;
  seconds: number;
  /** `host:pid` of the worker that restored it. */
  worker: string;
}

/** The job id of one file of a batch: `rt` and 40 hex digits (never all digits, never a ':'). */
export function restoreJobId(data: RestoreJobData, output: string): string {
  const p = data.params;
  const key = JSON.stringify([
    'retrace-restore-job',
    JOB_FORMAT,
    data.file,
    data.relative,
    output,
    data.pack.id,
    data.pack.unetSha256,
    p.seed,
    p.format,
    p.tile ?? null,
    p.overlap ?? null,
    p.steps ?? null,
    p.deterministic ?? null,
  ]);
  return `rt${createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
}

/** True for a string `restoreJobId` could have made. */
export function isRestoreJobId(id: string): boolean {
  return /^rt[0-9a-f]{40}$/.test(id);
}
