// The Restore view's state: one photo (shown before/after) or a folder (a per-file list filled
// live from the batch's item events, overall progress with ETA, pause and cancel). Pause stops
// the batch at its next network call (the unfinished file is left for later); resume starts it
// again with skip-existing, so finished files are not redone.
import { api, errorMessage, type ImageRef } from './api.js';
import { app } from './app.svelte.js';
import { basename } from './format.js';
import { jobs } from './jobs.svelte.js';
import { mergeRows, type RestoreRow } from './jobs.js';

export type { RestoreRow } from './jobs.js';

class RestoreStore {
  mode = $state<'photo' | 'folder'>('photo');
  model = $state('');
  photo = $state<ImageRef | null>(null);
  restored = $state<ImageRef | null>(null);
  folder = $state('');
  outputDir = $state('');
  recursive = $state(true);
  skipExisting = $state(true);
  /** Rows of finished runs; the running job's items are merged in live. */
  private baseRows = $state<RestoreRow[]>([]);
  private liveJobId = $state<string | undefined>(undefined);
  rows = $derived(mergeRows(this.baseRows, jobs.get(this.liveJobId)?.items ?? []));
  report = $state('');
  jobId = $state<string | undefined>(undefined);
  /** The latest job, still shown (with its outcome) after it ended. */
  lastJobId = $state<string | undefined>(undefined);
  paused = $state(false);
  error = $state('');
  message = $state('');
  busy = $derived(this.jobId !== undefined);

  sync(): void {
    const ids = app.restorePacks.map((p) => p.id);
    if (!ids.includes(this.model)) this.model = ids[0] ?? '';
  }

  async pickPhoto(): Promise<void> {
    try {
      const image = await api().invoke('dialog:openImage', {});
      if (image) {
        this.photo = image;
        this.restored = null;
        this.error = '';
      }
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  async pickFolder(which: 'input' | 'output'): Promise<void> {
    try {
      const picked = await api().invoke('dialog:openFolder', {});
      if (!picked) return;
      if (which === 'input') {
        this.folder = picked.path;
      } else this.outputDir = picked.path;
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  async restorePhoto(): Promise<void> {
    if (!this.photo) return;
    // One photo goes to the app's output folder; the source is never overwritten.
    const info = await api().invoke('app:info', {});
    const outputDir = `${String(info.outputDir)}/restored`;
    const job = await this.start(
      { inputs: [this.photo.path], outputDir, skipExisting: false },
      `Restore ${basename(this.photo.path)}`,
    );
    const items = (Array.isArray(job?.items) ? job.items : []) as {
      image?: ImageRef;
      status?: string;
      error?: string;
    }[];
    const first = items[0];
    if (first?.image) this.restored = first.image;
    else if (first?.status === 'failed') this.error = first.error ?? 'failed';
  }

  async restoreFolder(resume = false): Promise<void> {
    if (!this.folder || !this.outputDir) {
      this.error = 'Choose an input folder and an output folder.';
      return;
    }
    this.report = '';
    if (!resume) {
      this.baseRows = [];
      this.liveJobId = undefined;
    }
    this.paused = false;
    const job = await this.start(
      {
        inputs: [this.folder],
        outputDir: this.outputDir,
        recursive: this.recursive,
        skipExisting: resume || this.skipExisting,
      },
      `Restore folder ${basename(this.folder)}`,
    );
    if (job && typeof job.report === 'string') this.report = job.report;
  }

  private async start(
    params: { inputs: string[]; outputDir: string; recursive?: boolean; skipExisting: boolean },
    label: string,
  ): Promise<Record<string, unknown> | undefined> {
    if (!this.model) {
      this.error = 'No restoration model is installed.';
      return undefined;
    }
    this.error = '';
    this.message = '';
    try {
      const { jobId, done } = await jobs.start(
        { kind: 'restore', params: { model: this.model, ...params } },
        label,
      );
      this.jobId = jobId;
      this.lastJobId = jobId;
      if (params.inputs[0] === this.folder) this.liveJobId = jobId;
      const job = await done;
      if (job.status === 'failed') this.error = job.error ?? 'failed';
      if (job.status === 'cancelled') {
        this.message = this.paused ? 'Paused.' : 'Cancelled.';
        this.baseRows = mergeRows(this.baseRows, job.items);
        this.liveJobId = undefined;
      }
      const result = job.result;
      if (result && Array.isArray(result.items)) {
        if (this.liveJobId === job.jobId) {
          this.baseRows = mergeRows(this.baseRows, result.items as Record<string, unknown>[]);
          this.liveJobId = undefined;
        }
        if (result.cancelled === true) this.message = this.paused ? 'Paused.' : 'Cancelled.';
      }
      return result;
    } catch (err) {
      this.error = errorMessage(err);
      return undefined;
    } finally {
      this.jobId = undefined;
    }
  }

  async pause(): Promise<void> {
    if (!this.jobId) return;
    this.paused = true;
    await jobs.cancel(this.jobId);
  }

  async cancel(): Promise<void> {
    if (!this.jobId) return;
    this.paused = false;
    await jobs.cancel(this.jobId);
  }
}

export const restore = new RestoreStore();
