// The Generate view's state: the form, the running job, and the grid of results with the
// parameters each was made with.
import { errorMessage, type ImageRef } from './api.js';
import { app } from './app.svelte.js';
import { jobs } from './jobs.svelte.js';

export interface GeneratedImage extends ImageRef {
  seed: number;
  params: Record<string, unknown>;
}

export function randomSeed(): number {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return a[0] ?? 0;
}

class GenerateStore {
  prompt = $state('');
  negativePrompt = $state('');
  model = $state('');
  sampler = $state<'ddim' | 'bdia'>('ddim');
  timeShift = $state(true);
  tsWindow = $state(80);
  tsCutoff = $state(300);
  steps = $state(20);
  guidance = $state(3);
  seed = $state(0);
  count = $state(2);
  results = $state<GeneratedImage[]>([]);
  jobId = $state<string | undefined>(undefined);
  /** The latest job, still shown (with its outcome) after it ended. */
  lastJobId = $state<string | undefined>(undefined);
  error = $state('');
  message = $state('');
  busy = $derived(this.jobId !== undefined);

  dice(): void {
    this.seed = randomSeed();
  }

  /** Defaults of the chosen pack fill the form (steps, guidance, Time-Shift window). */
  applyPackDefaults(): void {
    const pack = app.textPacks.find((p) => p.id === this.model);
    const d = (pack?.defaults ?? {}) as Record<string, unknown>;
    if (typeof d.steps === 'number') this.steps = d.steps;
    if (typeof d.guidance === 'number') this.guidance = d.guidance;
    const ts = d.timeShift as { window?: number; cutoff?: number } | null | undefined;
    if (ts && typeof ts.window === 'number' && typeof ts.cutoff === 'number') {
      this.tsWindow = ts.window;
      this.tsCutoff = ts.cutoff;
    }
  }

  sync(): void {
    const ids = app.textPacks.map((p) => p.id);
    if (!ids.includes(this.model)) {
      this.model = ids[0] ?? '';
      this.applyPackDefaults();
    }
  }

  async generate(): Promise<void> {
    if (!this.model) {
      this.error = 'Choose a model first.';
      return;
    }
    this.error = '';
    this.message = '';
    const params = {
      model: this.model,
      prompt: this.prompt,
      negativePrompt: this.negativePrompt,
      sampler: this.sampler,
      steps: this.steps,
      guidance: this.guidance,
      seed: this.seed,
      count: this.count,
      timeShift: this.timeShift
        ? { window: this.tsWindow, cutoff: this.tsCutoff, variant: 'paper' as const }
        : null,
    };
    try {
      const label = `Generate ×${this.count}: ${this.prompt.slice(0, 40)}`;
      const { jobId, done } = await jobs.start({ kind: 'generate', params }, label);
      this.jobId = jobId;
      this.lastJobId = jobId;
      const job = await done;
      if (job.status === 'failed') this.error = job.error ?? 'failed';
      else if (job.status === 'cancelled') this.message = 'Cancelled.';
      else if (job.result) {
        const shown = {
          model: params.model,
          sampler: params.sampler,
          steps: params.steps,
          guidance: params.guidance,
        };
        const images = (job.result.images ?? []) as (ImageRef & { seed: number })[];
        this.results = [
          ...images.map((im) => ({
            ...im,
            params: {
              ...shown,
              prompt: params.prompt,
              timeShift: params.timeShift ? `W=${this.tsWindow}, cutoff=${this.tsCutoff}` : 'off',
              seed: im.seed,
            },
          })),
          ...this.results,
        ];
      }
    } catch (err) {
      this.error = errorMessage(err);
    } finally {
      this.jobId = undefined;
    }
  }

  async cancel(): Promise<void> {
    if (this.jobId) await jobs.cancel(this.jobId);
  }
}

export const generate = new GenerateStore();
