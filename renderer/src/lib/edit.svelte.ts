// The Edit view's state and actions: open a photo, invert it with a source prompt (the job also
// replays it to measure the round trip), apply edit prompts, step through them with undo/redo,
// and export the image or the inversion file — or import an inversion and replay it.
import { api, errorMessage, type ImageRef } from './api.js';
import { app } from './app.svelte.js';
import { basename } from './format.js';
import { History } from './history.js';
import { jobs } from './jobs.svelte.js';
import { coverage, loadMask, maskDataUrl, maskSize, type MaskSnapshot } from './mask.js';

/** One step of the history: an edit's result, or a mask stroke (undo and redo walk both). */
export interface EditEntry {
  /** `edit`: a result (its prompt goes back into the prompt box on undo/redo); `mask`: a stroke. */
  kind: 'edit' | 'mask';
  prompt: string;
  image: ImageRef | null;
  mask: MaskSnapshot | null;
}

export interface InversionState {
  path: string;
  packId: string;
  sourcePrompt: string;
  preview?: ImageRef;
  levels?: number[];
  pixelMaxAbsError?: number;
  latentMaxAbsError?: number;
  imported: boolean;
}

export interface Advanced {
  steps: number | undefined | null;
  strength: number | undefined | null;
  gamma: number | undefined | null;
  guidance: number | undefined | null;
}

class EditStore {
  source = $state<ImageRef | null>(null);
  model = $state('');
  sourcePrompt = $state('');
  editPrompt = $state('');
  advanced = $state<Advanced>({
    steps: undefined,
    strength: undefined,
    gamma: undefined,
    guidance: undefined,
  });
  inversion = $state<InversionState | null>(null);
  jobId = $state<string | undefined>(undefined);
  /** The latest job, still shown (with its outcome) after it ended. */
  lastJobId = $state<string | undefined>(undefined);
  error = $state('');
  message = $state('');
  compare = $state(true);
  /** Painting the mask (the view shows the painter instead of the comparison). */
  masking = $state(false);
  tool = $state<'brush' | 'eraser'>('brush');
  brushSize = $state(60);
  overlayOpacity = $state(0.5);
  exportFormat = $state<'png' | 'jpeg' | 'webp'>('png');
  private readonly history = new History<EditEntry>();
  private version = $state(0);

  current = $derived.by(() => {
    void this.version;
    return this.history.current;
  });
  canUndo = $derived.by(() => {
    void this.version;
    return this.history.canUndo;
  });
  canRedo = $derived.by(() => {
    void this.version;
    return this.history.canRedo;
  });
  busy = $derived(this.jobId !== undefined);

  private touch(): void {
    this.version += 1;
  }

  private resetResults(): void {
    this.inversion = null;
    this.history.reset({ kind: 'edit', prompt: '', image: null, mask: null });
    this.touch();
  }

  /** The mask in effect (the current history step's). */
  get mask(): MaskSnapshot | null {
    return this.current?.mask ?? null;
  }

  /** A stroke (or clear, invert, automatic mask) became the current mask: one undo step. */
  setMask(mask: MaskSnapshot | null): void {
    const at = this.history.current;
    this.history.push({ kind: 'mask', prompt: at?.prompt ?? '', image: at?.image ?? null, mask });
    this.touch();
  }

  /** DiffEdit's mask for the two prompts, shown for touching up. */
  async autoMask(): Promise<void> {
    if (!this.source) return;
    if (!this.model) {
      this.error = 'Choose a model first.';
      return;
    }
    const a = this.advanced;
    const source = this.source;
    const result = await this.run(
      {
        kind: 'automask',
        params: {
          model: this.model,
          image: source.path,
          sourcePrompt: this.sourcePrompt,
          prompt: this.editPrompt,
          ...(a.guidance != null ? { guidance: a.guidance } : {}),
        },
      },
      `Auto mask: ${this.editPrompt.slice(0, 40)}`,
    );
    if (!result) return;
    const ref = result.mask as ImageRef;
    const size = maskSize(source.width, source.height);
    try {
      this.setMask(await loadMask(ref.url, size.width, size.height));
      this.masking = true;
      this.message = `Automatic mask: ${Math.round(Number(result.coverage) * 100)} % of the photo. Touch it up with the brush.`;
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  setSource(image: ImageRef): void {
    this.source = image;
    this.error = '';
    this.message = '';
    this.sourcePrompt = '';
    this.resetResults();
  }

  async openImage(): Promise<void> {
    try {
      const image = await api().invoke('dialog:openImage', {});
      if (image) this.setSource(image);
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  async openPath(path: string): Promise<void> {
    try {
      this.setSource(await api().invoke('files:openImage', { path }));
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  private async run(
    request: Parameters<typeof jobs.start>[0],
    label: string,
  ): Promise<Record<string, unknown> | undefined> {
    this.error = '';
    this.message = '';
    try {
      const { jobId, done } = await jobs.start(request, label);
      this.jobId = jobId;
      this.lastJobId = jobId;
      const job = await done;
      if (job.status === 'failed') this.error = job.error ?? 'failed';
      if (job.status === 'cancelled') this.message = 'Cancelled.';
      return job.status === 'done' ? job.result : undefined;
    } catch (err) {
      this.error = errorMessage(err);
      return undefined;
    } finally {
      this.jobId = undefined;
    }
  }

  async invert(): Promise<void> {
    if (!this.source) return;
    if (!this.model) {
      this.error = 'Choose a model first.';
      return;
    }
    const a = this.advanced;
    const result = await this.run(
      {
        kind: 'invert',
        params: {
          model: this.model,
          image: this.source.path,
          prompt: this.sourcePrompt,
          ...(a.steps != null ? { steps: a.steps } : {}),
          ...(a.strength != null ? { strength: a.strength } : {}),
          ...(a.gamma != null ? { gamma: a.gamma } : {}),
          ...(a.guidance != null ? { guidance: a.guidance } : {}),
        },
      },
      `Invert ${basename(this.source.path)}`,
    );
    if (!result) return;
    const roundtrip = (result.roundtrip ?? {}) as Record<string, unknown>;
    if (typeof result.caption === 'string' && !this.sourcePrompt)
      this.sourcePrompt = result.caption;
    this.inversion = {
      path: String(result.inversion),
      packId: this.model,
      sourcePrompt: this.sourcePrompt,
      preview: result.preview as ImageRef,
      levels: result.levels as number[],
      ...(typeof roundtrip.pixelMaxAbsError === 'number'
        ? { pixelMaxAbsError: roundtrip.pixelMaxAbsError }
        : {}),
      ...(typeof roundtrip.latentMaxAbsError === 'number'
        ? { latentMaxAbsError: roundtrip.latentMaxAbsError }
        : {}),
      imported: false,
    };
    this.history.reset({
      kind: 'edit',
      prompt: this.sourcePrompt,
      image: roundtrip.image as ImageRef,
      mask: this.mask,
    });
    this.touch();
    if (!this.editPrompt) this.editPrompt = this.sourcePrompt;
  }

  async applyEdit(): Promise<void> {
    const inv = this.inversion;
    if (!inv) return;
    const a = this.advanced;
    const mask = this.mask;
    // With the photo at hand the edit comes back at its full size; a painted mask limits it.
    let maskPath: string | undefined;
    if (this.source && mask && coverage(mask) > 0) {
      try {
        maskPath = (await api().invoke('files:saveMask', { dataUrl: maskDataUrl(mask) })).path;
      } catch (err) {
        this.error = errorMessage(err);
        return;
      }
    }
    const result = await this.run(
      {
        kind: 'replay',
        params: {
          inversion: inv.path,
          prompt: this.editPrompt,
          ...(this.source && !inv.imported ? { source: this.source.path } : {}),
          ...(maskPath !== undefined && !inv.imported ? { mask: maskPath } : {}),
          ...(a.guidance != null ? { guidance: a.guidance } : {}),
        },
      },
      `Edit: ${this.editPrompt.slice(0, 40) || '(empty prompt)'}`,
    );
    if (!result) return;
    const image = result.image as ImageRef;
    if (inv.imported && !this.source) this.source = image;
    if (typeof result.latentMaxAbsError === 'number' && this.editPrompt === inv.sourcePrompt) {
      this.inversion = { ...inv, latentMaxAbsError: result.latentMaxAbsError };
    }
    this.history.push({ kind: 'edit', prompt: this.editPrompt, image, mask });
    this.masking = false;
    this.touch();
  }

  undo(): void {
    const from = this.history.current?.image;
    const entry = this.history.undo();
    // The prompt box follows the results, not the strokes between them.
    if (entry?.image && entry.image !== from) this.editPrompt = entry.prompt;
    this.touch();
  }

  redo(): void {
    const from = this.history.current?.image;
    const entry = this.history.redo();
    if (entry?.image && entry.image !== from) this.editPrompt = entry.prompt;
    this.touch();
  }

  async cancel(): Promise<void> {
    if (this.jobId) await jobs.cancel(this.jobId);
  }

  async exportImage(): Promise<void> {
    const entry = this.current;
    if (!entry?.image) return;
    const image = entry.image;
    const ext = this.exportFormat === 'jpeg' ? 'jpg' : this.exportFormat;
    const name = `${basename(image.path).replace(/\.[^.]+$/, '')}.${ext}`;
    try {
      const target = await api().invoke('dialog:saveFile', {
        defaultName: name,
        filters: [{ name: this.exportFormat.toUpperCase(), extensions: [ext] }],
      });
      if (!target) return;
      const { path } = await api().invoke('files:exportImage', {
        source: image.path,
        destination: target.path,
        format: this.exportFormat,
        metadata: {
          prompt: entry.prompt,
          sourcePrompt: this.inversion?.sourcePrompt ?? '',
          model: this.inversion?.packId ?? this.model,
        },
      });
      this.message = `Exported ${basename(path)}.`;
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  async exportInversion(): Promise<void> {
    const inv = this.inversion;
    if (!inv) return;
    try {
      const target = await api().invoke('dialog:saveFile', {
        defaultName: basename(inv.path),
        filters: [{ name: 'Retrace inversion', extensions: ['safetensors'] }],
      });
      if (!target) return;
      const { path } = await api().invoke('files:copy', {
        source: inv.path,
        destination: target.path,
      });
      this.message = `Saved inversion ${basename(path)}.`;
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  async importInversion(): Promise<void> {
    try {
      const picked = await api().invoke('dialog:openInversion', {});
      if (!picked) return;
      const meta = await api().invoke('files:inversionInfo', { path: picked.path });
      const packId = meta.packId ?? meta.pack ?? '';
      const sourcePrompt = meta.prompt ?? meta.sourcePrompt ?? '';
      this.source = null;
      this.resetResults();
      this.inversion = { path: picked.path, packId, sourcePrompt, imported: true };
      this.sourcePrompt = sourcePrompt;
      this.editPrompt = sourcePrompt;
      if (packId) this.model = packId;
      this.message = `Imported ${basename(picked.path)} (model ${packId || 'unknown'}).`;
      this.error = '';
    } catch (err) {
      this.error = errorMessage(err);
    }
  }

  /** Picks a sensible model once packs are known, and takes an image handed over by Generate. */
  sync(): void {
    const ids = app.textPacks.map((p) => p.id);
    if (!this.model || (!ids.includes(this.model) && !this.inversion?.imported))
      this.model = ids[0] ?? '';
    if (app.handoff) {
      this.setSource(app.handoff);
      app.handoff = null;
    }
  }
}

export const edit = new EditStore();
