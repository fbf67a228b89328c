// Progress of a restore batch in network calls, not files: a 24 MP photo is hundreds of tile
// calls and a thumbnail is five, so counting files makes the ETA swing from minutes to days.
// Before the batch starts, each file's header gives its size and so its tile plan; the batch then
// reports one phase whose steps are network calls over the whole folder, and the job queue's
// ETA (EtaEstimator) follows the restore's real speed from the first tile on.
import sharp from 'sharp';
import type { ProgressEvent } from '../progress.js';
import type { BatchInput } from './batch.js';

/**
 * Network calls per input, from the image headers (no pixels decoded). A file whose header
 * cannot be read, or that `skip` says will not be restored, counts 0: the batch reports it.
 */
export async function measureWork(
  inputs: readonly BatchInput[],
  callsFor: (width: number, height: number) => number,
  skip: (input: BatchInput) => Promise<boolean> = async () => false,
): Promise<Map<string, number>> {
  const work = new Map<string, number>();
  for (const input of inputs) {
    let calls = 0;
    try {
      if (!(await skip(input))) {
        const header = await sharp(input.file, { limitInputPixels: false }).metadata();
        const width = header.autoOrient?.width ?? header.width;
        const height = header.autoOrient?.height ?? header.height;
        if (width && height) calls = callsFor(width, height);
      }
    } catch {
      calls = 0;
    }
    work.set(input.relative, calls);
  }
  return work;
}

/**
 * Turns a batch's two kinds of events — a file's own steps (`detail` = its relative path) and
 * the batch's "file finished" events (phase `restoring folder`) — into one monotonic phase:
 * step = network calls done over the whole batch, total = all of them.
 */
export class WorkProgress {
  private readonly total: number;
  private readonly counted = new Set<string>();
  private base = 0;
  private current: string | undefined;
  /** Calls done in the file being restored. */
  private currentStep = 0;
  private filesDone = 0;

  constructor(
    private readonly work: ReadonlyMap<string, number>,
    private readonly emit: (e: ProgressEvent) => void,
  ) {
    let total = 0;
    for (const calls of work.values()) total += calls;
    this.total = total;
  }

  private finish(relative: string): void {
    if (this.counted.has(relative)) return;
    this.counted.add(relative);
    this.base += this.work.get(relative) ?? 0;
  }

  private files(): string {
    return `${this.filesDone}/${this.work.size} files`;
  }

  /** One event from the batch or from the file being restored. */
  update(e: ProgressEvent): void {
    if (e.phase === 'restoring folder') {
      this.filesDone = e.step;
      if (e.detail !== undefined) this.finish(e.detail);
      if (e.detail === this.current) this.current = undefined;
      const running = this.current === undefined ? 0 : this.currentStep;
      this.emit({
        phase: 'restoring folder',
        step: Math.min(this.base + running, this.total),
        total: this.total,
        detail: `${this.files()} · ${e.detail ?? ''}`,
      });
      return;
    }
    const relative = e.detail ?? '';
    if (relative !== this.current) {
      // The batch restores one file at a time: a new file means the last one's calls are done.
      if (this.current !== undefined) this.finish(this.current);
      this.current = relative;
    }
    this.currentStep = Math.min(e.step, this.work.get(relative) ?? 0);
    this.emit({
      phase: 'restoring folder',
      step: Math.min(this.base + this.currentStep, this.total),
      total: this.total,
      detail: `${this.files()} · ${relative}`,
    });
  }
}
