// The engine's one entry point for the CLI, the engine host (utilityProcess) and tests: packs by
// id, models opened once and kept, and every job as `validate → pipeline → write files`.
// Pipelines compute; this module decides where results go, writes them atomically with their
// parameters, and never overwrites a source.
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import {
  autoMaskParamsSchema,
  editRequestSchema,
  replayParamsSchema,
  restoreParamsSchema,
  type AutoMaskParams,
  type EditParams,
  type GenerateParams,
  type InvertParams,
  type ReplayParams,
  type RestoreParams,
  type RoundtripParams,
} from '../contract/jobs.js';
import { RetraceError } from './errors.js';
import { measureWork, WorkProgress } from './jobs/work.js';
import {
  checkInversionFor,
  readInversion,
  writeInversion,
  type Inversion,
} from './formats/inversion.js';
import { writeBatchReport } from './formats/report.js';
import {
  fitToMultiple,
  formatA1111,
  type A1111Parameters,
  fromModelOutput,
  readImage,
  resizeImage,
  sha256File,
  toModelInput32,
  writeImage,
  type ImageMetadata,
  type RgbImage,
} from './images/io.js';
import {
  collectInputs,
  exists,
  fileSeed,
  runBatch,
  type BatchInput,
  type BatchItem,
  type BatchStages,
} from './jobs/batch.js';
import {
  defaultPackDirs,
  PackRegistry,
  type LoadedPack,
  type PackListEntry,
} from './packs/loader.js';
import { describeNetworks, type NetworkDescription } from './packs/networks.js';
import {
  areaDownsample,
  compositeChange,
  maskFromGrid,
  readMask,
  readPhoto,
  workingCopy,
  writeMask,
  writePhoto,
} from './images/photo.js';
import { AUTO_MASK_DEFAULTS, autoMask } from './pipelines/automask.js';
import { ENGINE_DEFAULTS, scheduleOf } from './pipelines/common.js';
import {
  changeOf,
  editFromInversion,
  editImageLatents,
  editImageLatentsDdim,
  type SourceTrajectory,
} from './pipelines/edit.js';
import { generate as generatePipeline } from './pipelines/generate.js';
import {
  decodeState,
  encode as encodeState,
  invertImage as invertPipeline,
  replayInversion as replayPipeline,
  roundtrip as roundtripPipeline,
  type InversionState,
  type ModelImage,
} from './pipelines/invert.js';
import { DiffusionModel, type RuntimeRecord } from './pipelines/model.js';
import { restoreImage, restoreTilePlan } from './pipelines/restore.js';
import { scheduleLength } from './schedulers/schedule.js';
import type { ProgressEvent, RunOptions } from './progress.js';
import { providerPlan, type PassedOver, type ProviderPreference } from './runtime/session.js';
import { maxAbsDiff } from './runtime/tensors.js';

export const ENGINE_VERSION = '0.1.0';

export interface EngineConfig {
  /** Folders holding bundled packs; default: the repository's / app's `models/packs`. */
  packDirs?: string[];
  /** Where imports are recorded (imports.json) and user packs live. */
  userDir: string;
  runtime?: { provider?: ProviderPreference; threads?: number };
}

export type ImageFormat = 'png' | 'jpeg' | 'webp';

export interface GenerateTarget {
  /** Folder for the images (named `<prefix>-<seed>.<format>`). */
  dir?: string;
  /** One file; with several images the seed is added before the extension. */
  file?: string;
  format?: ImageFormat;
  prefix?: string;
}

export interface GenerateResult {
  images: { file: string; seed: number; width: number; height: number }[];
  nfe: number;
  seconds: number;
  params: Record<string, unknown>;
}

export interface InvertResult {
  inversion: string;
  preview: string;
  nfe: number;
  seconds: number;
  levels: number[];
}

export interface ReplayResult {
  image: string;
  nfe: number;
  seconds: number;
  /** Full-size results (edit, or replay with a source photo). */
  width?: number;
  height?: number;
  /** Share of the photo the mask covers (before feathering); absent: the whole photo. */
  maskCoverage?: number;
  /** The latent came back as the source's: the result is the photo itself. */
  unchanged?: boolean;
  /**
   * A replay of the source prompt from a file that keeps the source latent: how far from it the
   * replay landed (0 where inversion and replay ran on the same provider and precision).
   */
  latentMaxAbsError?: number;
  warnings?: string[];
}

/**
 * A warning when the replay runs somewhere other than where the inversion was made (another
 * provider, onnxruntime or precision): allowed, but not bit-exact.
 */
function describeRuntimeChange(
  recorded: { provider?: string; onnxruntime?: string; precision?: string },
  now: RuntimeRecord,
): string | undefined {
  const changes: string[] = [];
  if (recorded.provider !== undefined && recorded.provider !== now.provider)
    changes.push(`provider ${recorded.provider} → ${now.provider}`);
  if (recorded.precision !== undefined && recorded.precision !== now.precision)
    changes.push(`precision ${recorded.precision} → ${now.precision}`);
  if (recorded.onnxruntime !== undefined && recorded.onnxruntime !== now.onnxruntime)
    changes.push(`onnxruntime ${recorded.onnxruntime} → ${now.onnxruntime}`);
  if (changes.length === 0) return undefined;
  return `inverted and replayed on different runtimes (${changes.join(', ')}): the replay is exact only where the network repeats its outputs bit for bit, so it may not be`;
}

export interface EditResult extends ReplayResult {
  width: number;
  height: number;
  workingWidth: number;
  workingHeight: number;
  inversion?: string;
  /** Network calls of the automatic mask (included in nfe). */
  maskNfe?: number;
  /** Where the mask was written (--mask-out). */
  mask?: string;
}

export interface RoundtripResult {
  method: string;
  latentMaxAbsError: number;
  pixelMaxAbsError: number;
  vaeMaxAbsError: number;
  nfe: number;
  seconds: number;
  gamma?: number;
  /** Sampling steps each way, one network call each: nfe = 2 × steps. */
  steps: number;
  /** M, the DDIM levels kept from --steps and --strength (BDIA steps M − 1 times each way). */
  keptLevels: number;
  image?: string;
}

export interface RestoreResult {
  items: BatchItem[];
  report: string;
  csv: string;
  cancelled: boolean;
}

/** The per-file work of a restore batch (see `Engine.restorePlan`). */
export interface RestorePlan {
  params: z.output<typeof restoreParamsSchema>;
  model: DiffusionModel;
  outputDir: string;
  /** Maps a source's relative path to its output's (absent: the same). */
  outputName?: (relative: string) => string;
  stages: BatchStages<RgbImage, RgbImage>;
}

export interface RuntimeReport {
  /** Providers the job's networks ran on. */
  used: string[];
  /** Providers not tried, and why. */
  passedOver: PassedOver[];
  /** Providers tried that failed to start, and their errors (then CPU took over). */
  failed: { provider: string; error: string }[];
}

export interface PackDetails extends PackListEntry {
  card?: string;
  eval?: unknown;
  manifest: unknown;
  /** Each network's precision and declared inputs/outputs (absent when a graph is unreadable). */
  networks?: NetworkDescription[];
}

const extensionOf: Record<ImageFormat, string> = { png: '.png', jpeg: '.jpg', webp: '.webp' };

/** Output formats of a full-size edit: PNG keeps every sample exactly; the others re-encode. */
function photoFormatOf(file: string): 'png' | 'jpeg' | 'webp' | 'tiff' {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.png') return 'png';
  if (ext === '.jpg' || ext === '.jpeg') return 'jpeg';
  if (ext === '.webp') return 'webp';
  if (ext === '.tif' || ext === '.tiff') return 'tiff';
  throw new RetraceError(
    'BAD_INPUT',
    `${file}: unsupported output type (use .png — exact outside the mask — or .jpg, .webp, .tif)`,
  );
}

function formatFromFile(file: string): ImageFormat {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jpg' || ext === '.jpeg') return 'jpeg';
  if (ext === '.webp') return 'webp';
  if (ext === '.png') return 'png';
  throw new RetraceError('BAD_INPUT', `${file}: unsupported output type (use .png, .jpg or .webp)`);
}

function toModelImage(image: RgbImage): ModelImage {
  return { chw: toModelInput32(image), width: image.width, height: image.height };
}

function toRgb(image: ModelImage, alpha?: Float32Array): RgbImage {
  return fromModelOutput(image.chw, image.width, image.height, alpha);
}

/** Size and modification time of each file ('-' where there is none): a cheap change check. */
async function fileStamp(files: readonly string[]): Promise<string> {
  const stats = await Promise.all(files.map((f) => stat(f).catch(() => undefined)));
  return stats.map((s) => (s ? `${s.size}:${s.mtimeMs}` : '-')).join('|');
}

/**
 * The working size for `--working-size N` (the long side): N must be a multiple of the pack's
 * `multipleOf`; the short side follows the photo's aspect, rounded to the same multiple.
 */
function workingSizeFromLongSide(pack: LoadedPack, width: number, height: number, side: number) {
  const multiple = pack.manifest.resolution.multipleOf;
  if (side % multiple !== 0) {
    throw new RetraceError(
      'BAD_INPUT',
      `--working-size ${side}: pack ${pack.id} needs a multiple of ${multiple} (e.g. ${Math.max(multiple, Math.round(side / multiple) * multiple)})`,
    );
  }
  const scale = side / Math.max(width, height);
  return fitToMultiple(width * scale, height * scale, multiple);
}

/** The working size of a photo for a text-to-image pack: its long side at the pack's default. */
function workingSize(pack: LoadedPack, width: number, height: number) {
  const [dw, dh] = pack.manifest.resolution.default;
  const scale = Math.max(dw, dh) / Math.max(width, height);
  return fitToMultiple(width * scale, height * scale, pack.manifest.resolution.multipleOf);
}

/** The most of a model card sent to the window: a card is prose and tables, not a payload. */
export const MAX_CARD_BYTES = 256 * 1024;

/** A model card's text, cut at MAX_CARD_BYTES (on a line break) with a note saying so. */
export async function readCard(file: string): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(MAX_CARD_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead <= MAX_CARD_BYTES) return buffer.subarray(0, bytesRead).toString('utf8');
    const text = buffer.subarray(0, MAX_CARD_BYTES).toString('utf8');
    const cut = text.lastIndexOf('\n');
    return `${cut > 0 ? text.slice(0, cut) : text}\n\n*(card cut at ${MAX_CARD_BYTES / 1024} KiB)*\n`;
  } finally {
    await handle.close();
  }
}

export class Engine {
  private readonly registry: PackRegistry;
  private runtime: { provider?: ProviderPreference; threads?: number };
  private readonly models = new Map<string, DiffusionModel>();
  /** How each id or folder asked for resolved, and the files' stamp when it did. */
  private readonly resolved = new Map<string, { key: string; files: string[]; stamp: string }>();
  /**
   * Source trajectories of the inversions made in this session, by file (and its size and
   * modification time): a masked edit of one of them replays only the edit (ALGORITHMS.md §5).
   */
  private readonly trajectories = new Map<
    string,
    { stamp: string; trajectory: SourceTrajectory }
  >();
  private static readonly KEPT_TRAJECTORIES = 4;

  constructor(private readonly config: EngineConfig) {
    this.registry = new PackRegistry({
      bundledDirs: config.packDirs ?? defaultPackDirs(),
      userDir: config.userDir,
    });
    this.runtime = { ...(config.runtime ?? {}) };
  }

  /** Changes the execution provider / threads; models reopen on their next use. */
  async setRuntime(runtime: { provider?: ProviderPreference; threads?: number }): Promise<void> {
    this.runtime = { ...this.runtime, ...runtime };
    await this.close();
  }

  listPacks(): Promise<PackListEntry[]> {
    return this.registry.list();
  }

  async packInfo(id: string): Promise<PackDetails> {
    const entries = await this.registry.list();
    const entry = entries.find((e) => e.id === id);
    if (!entry) {
      throw new RetraceError(
        'BAD_INPUT',
        `no pack '${id}' (known: ${entries.map((e) => e.id).join(', ') || 'none'})`,
      );
    }
    if (!entry.ok) return { ...entry, manifest: undefined };
    const pack = await this.registry.get(id);
    const details: PackDetails = {
      ...entry,
      manifest: pack.manifest,
    };
    const networks = await describeNetworks(pack).catch(() => undefined);
    if (networks) details.networks = networks;
    if (pack.cardFile) details.card = await readCard(pack.cardFile);
    if (pack.evalFile) details.eval = JSON.parse(await readFile(pack.evalFile, 'utf8')) as unknown;
    return details;
  }

  async importPack(folder: string, id?: string): Promise<PackListEntry> {
    const pack = await this.registry.importFolder(folder, id === undefined ? {} : { id });
    this.resolved.clear();
    const entry = (await this.registry.list()).find((e) => e.id === pack.id);
    if (!entry) throw new RetraceError('RUNTIME', `imported pack ${pack.id} is not listed`);
    return entry;
  }

  /**
   * The providers this build can try, in order, those passed over (with why), and what the open
   * sessions actually use (with each fallback's reason).
   */
  providers(): {
    candidates: string[];
    passedOver: PassedOver[];
    sessions: { file: string; used: string; attempts: unknown[] }[];
  } {
    const plan = providerPlan(this.runtime.provider ?? 'auto');
    return {
      candidates: plan.candidates,
      passedOver: plan.passedOver,
      sessions: [...this.models.values()].flatMap((m) =>
        m.sessions().map((s) => ({
          file: s.file,
          used: s.provider.used,
          attempts: s.provider.attempts,
        })),
      ),
    };
  }

  /** For a job's report: the providers its networks ran on, and why the others were not used. */
  runtimeReport(): RuntimeReport {
    const sessions = [...this.models.values()].flatMap((m) => m.sessions());
    const used = [...new Set(sessions.map((s) => s.provider.used))];
    const fellBack = new Map<string, string>();
    for (const s of sessions)
      for (const a of s.provider.attempts) if (a.error) fellBack.set(a.provider, a.error);
    return {
      used,
      passedOver:
        sessions[0]?.provider.passedOver ??
        providerPlan(this.runtime.provider ?? 'auto').passedOver,
      failed: [...fellBack].map(([provider, error]) => ({ provider, error })),
    };
  }

  /**
   * The model of a pack (by id or folder), opened once and kept. A repeated lookup reuses the
   * open model while the pack's manifest and network files keep their size and modification
   * time (a few stat calls), instead of finding and checking the pack again (milliseconds).
   */
  async model(idOrPath: string): Promise<DiffusionModel> {
    const known = this.resolved.get(idOrPath);
    if (known) {
      const model = this.models.get(known.key);
      if (model && (await fileStamp(known.files)) === known.stamp) return model;
      this.resolved.delete(idOrPath);
    }
    const pack = await this.registry.get(idOrPath);
    const key = `${pack.id}@${pack.unetSha256}`;
    let model = this.models.get(key);
    if (!model) {
      model = new DiffusionModel(pack, this.runtime);
      this.models.set(key, model);
    }
    const files = [
      path.join(pack.dir, 'pack.json'),
      path.join(pack.dir, 'model_index.json'),
      ...Object.values(pack.files).filter((f): f is string => typeof f === 'string'),
    ];
    this.resolved.set(idOrPath, { key, files, stamp: await fileStamp(files) });
    return model;
  }

  async generate(
    p: GenerateParams,
    out: GenerateTarget,
    run: RunOptions = {},
  ): Promise<GenerateResult> {
    const model = await this.model(p.model);
    const result = await generatePipeline(model, p, run);
    const format = out.format ?? (out.file ? formatFromFile(out.file) : 'png');
    const images: GenerateResult['images'] = [];
    for (const image of result.images) {
      const file = this.generatedName(out, format, image.seed, result.images.length);
      const params = {
        ...result.params,
        seed: image.seed,
        count: 1,
        nfe: result.nfe / result.images.length,
      };
      await mkdir(path.dirname(file), { recursive: true });
      await writeImage(file, toRgb(image), {
        format,
        metadata: this.metadata('generate', params, {
          prompt: result.params.prompt,
          negativePrompt: result.params.negativePrompt,
          steps: result.params.steps,
          sampler:
            result.params.sampler === 'bdia'
              ? 'BDIA-DDIM'
              : result.params.timeShift
                ? 'DDIM Time-Shift'
                : 'DDIM',
          guidance: result.params.guidance,
          seed: image.seed,
          width: image.width,
          height: image.height,
          model: model.source.id,
        }),
      });
      images.push({ file, seed: image.seed, width: image.width, height: image.height });
    }
    return { images, nfe: result.nfe, seconds: result.seconds, params: { ...result.params } };
  }

  private generatedName(
    out: GenerateTarget,
    format: ImageFormat,
    seed: number,
    count: number,
  ): string {
    if (out.file) {
      if (count === 1) return path.resolve(out.file);
      const ext = path.extname(out.file);
      return path.resolve(`${out.file.slice(0, out.file.length - ext.length)}-${seed}${ext}`);
    }
    if (!out.dir) throw new RetraceError('BAD_INPUT', 'out: give a folder or a file');
    return path.resolve(out.dir, `${out.prefix ?? 'retrace'}-${seed}${extensionOf[format]}`);
  }

  private metadata(
    job: string,
    params: Record<string, unknown>,
    a1111?: A1111Parameters,
  ): ImageMetadata {
    const metadata: ImageMetadata = { retrace: { job, engine: ENGINE_VERSION, ...params } };
    if (a1111) metadata.parameters = formatA1111(a1111);
    return metadata;
  }

  /** Reads a photo and resizes it to the pack's working size. */
  private async workingImage(pack: LoadedPack, file: string) {
    const source = await readImage(file);
    const size = workingSize(pack, source.width, source.height);
    const resized =
      size.width === source.width && size.height === source.height
        ? source
        : await resizeImage(source, size.width, size.height);
    return { source, image: toModelImage(resized) };
  }

  async invertImage(p: InvertParams, outFile: string, run: RunOptions = {}): Promise<InvertResult> {
    if (!outFile.endsWith('.safetensors')) {
      throw new RetraceError(
        'BAD_INPUT',
        `${outFile}: an inversion file must end in .inversion.safetensors`,
      );
    }
    const model = await this.model(p.model);
    const pack = model.source as LoadedPack;
    const { image } = await this.workingImage(pack, p.image);
    const states = new Map<number, Float64Array>();
    const result = await invertPipeline(model, image, p, run, {
      onState: (k, z) => states.set(k, Float64Array.from(z)),
    });
    const written = await this.writeInversionFile(
      model,
      result.inversion,
      result.latent,
      await sha256File(p.image),
      outFile,
    );
    await this.keepTrajectory(written.inversion, { states, source: result.latent });
    return {
      ...written,
      nfe: result.nfe,
      seconds: result.seconds,
      levels: result.inversion.levels,
    };
  }

  private async keepTrajectory(file: string, trajectory: SourceTrajectory): Promise<void> {
    const stamp = await fileStamp([file]);
    this.trajectories.delete(file);
    this.trajectories.set(file, { stamp, trajectory });
    while (this.trajectories.size > Engine.KEPT_TRAJECTORIES) {
      const oldest = this.trajectories.keys().next().value;
      if (oldest === undefined) break;
      this.trajectories.delete(oldest);
    }
  }

  /** The kept trajectory of an inversion file made in this session, if the file is unchanged. */
  private async keptTrajectory(file: string): Promise<SourceTrajectory | undefined> {
    const kept = this.trajectories.get(path.resolve(file));
    if (!kept) return undefined;
    return (await fileStamp([path.resolve(file)])) === kept.stamp ? kept.trajectory : undefined;
  }

  /** Writes an inversion file (and its preview PNG beside it). */
  private async writeInversionFile(
    model: DiffusionModel,
    inv: InversionState,
    latent: Float64Array,
    sourceSha256: string,
    outFile: string,
  ): Promise<{ inversion: string; preview: string }> {
    const pack = model.source as LoadedPack;
    const decoded = await decodeState(model, latent, inv.shape);
    const preview = toRgb({ chw: decoded.chw, width: decoded.width, height: decoded.height });
    const inversion: Inversion = {
      zTop: inv.top,
      zNext: inv.next,
      shape: inv.shape,
      preview: { data: rgb8(preview), width: preview.width, height: preview.height },
      meta: {
        packId: pack.id,
        unetSha256: pack.unetSha256,
        method: 'bdia',
        gamma: inv.gamma,
        levels: inv.levels,
        guidance: inv.guidance,
        prompt: inv.prompt,
        negativePrompt: inv.negativePrompt,
        width: inv.width,
        height: inv.height,
        sourceSha256,
        engineVersion: ENGINE_VERSION,
        createdAt: new Date().toISOString(),
        strength: inv.strength,
        steps: inv.steps,
        ...(await model.runtimeRecord()),
      },
      zSource: latent,
    };
    const target = path.resolve(outFile);
    await mkdir(path.dirname(target), { recursive: true });
    await writeInversion(target, inversion);
    const previewFile = target.replace(/\.inversion\.safetensors$|\.safetensors$/, '.preview.png');
    await writeImage(previewFile, preview, { format: 'png' });
    return { inversion: target, preview: previewFile };
  }

  /**
   * Edits a photo in one job (ALGORITHMS.md §5): invert at the working size with the source
   * prompt, replay with the edit prompt (blended to the source trajectory outside the mask), and
   * add the change to the photo at its own size, O = S + M·up(D(w) − D(x)). Where the feathered
   * mask is 0, and everywhere when the prompts agree, the output's samples are the photo's.
   */
  async edit(p: EditParams, outFile: string, run: RunOptions = {}): Promise<EditResult> {
    const parsed = editRequestSchema.safeParse(p);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue?.path.join('.') ?? '';
      throw new RetraceError(
        'BAD_INPUT',
        `edit: ${field === 'autoMask' ? '--mask and --auto-mask' : field}: ${issue?.message ?? 'invalid'}`,
      );
    }
    const params = parsed.data;
    const target = path.resolve(outFile);
    const format = photoFormatOf(target);
    if (params.exportInversion !== undefined && !params.exportInversion.endsWith('.safetensors')) {
      throw new RetraceError(
        'BAD_INPUT',
        `${params.exportInversion}: an inversion file must end in .inversion.safetensors`,
      );
    }
    const model = await this.model(params.model);
    const pack = model.source as LoadedPack;
    run.onProgress?.({ phase: 'reading photo', step: 0, total: 1 });
    const photo = await readPhoto(params.image);
    const size =
      params.workingSize !== undefined
        ? workingSizeFromLongSide(pack, photo.width, photo.height, params.workingSize)
        : workingSize(pack, photo.width, photo.height);
    const feather = params.feather !== undefined ? { feather: params.feather } : {};
    let mask =
      params.mask !== undefined
        ? await readMask(params.mask, photo.width, photo.height, feather)
        : undefined;
    for (const warning of mask?.warnings ?? [])
      run.onProgress?.({ phase: 'warning', step: 0, total: 0, detail: warning });
    const image = await workingCopy(photo, size.width, size.height);
    // The latent is encoded once: the automatic mask and the inversion must see the same x.
    const encoded = await encodeState(model, image);
    let maskNfe = 0;
    if (params.autoMask) {
      const found = await autoMask(
        model,
        encoded.latent,
        encoded.shape,
        { source: params.sourcePrompt, edit: params.prompt, negative: params.negativePrompt },
        {
          ...AUTO_MASK_DEFAULTS,
          ...(params.maskRatio !== undefined ? { ratio: params.maskRatio } : {}),
          guidance: params.guidance ?? ENGINE_DEFAULTS.guidance,
        },
        run,
      );
      maskNfe = found.nfe;
      if (found.coverage === 0) {
        throw new RetraceError(
          'BAD_INPUT',
          `${params.image}: the automatic mask is empty (the two prompts agree everywhere on this photo); paint a mask, lower --mask-ratio, or make the edit prompt differ where the change should be`,
        );
      }
      mask = await maskFromGrid(
        found.mask,
        found.width,
        found.height,
        photo.width,
        photo.height,
        feather,
      );
    }
    if (mask && params.maskOut !== undefined) await writeMask(path.resolve(params.maskOut), mask);
    if (params.method !== 'bdia' && params.exportInversion !== undefined) {
      throw new RetraceError(
        'BAD_INPUT',
        '--export-inversion: only a BDIA edit has an exact inversion to export',
      );
    }
    const editFn = params.method === 'bdia' ? editImageLatents : editImageLatentsDdim;
    const latents = await editFn(
      model,
      image,
      {
        model: params.model,
        image: params.image,
        prompt: params.sourcePrompt,
        negativePrompt: params.negativePrompt,
        allowLowGamma: params.allowLowGamma,
        ...(params.steps !== undefined ? { steps: params.steps } : {}),
        ...(params.strength !== undefined ? { strength: params.strength } : {}),
        ...(params.gamma !== undefined ? { gamma: params.gamma } : {}),
        ...(params.guidance !== undefined ? { guidance: params.guidance } : {}),
      },
      { prompt: params.prompt, negativePrompt: params.negativePrompt },
      mask ? (gh, gw) => areaDownsample(mask.values, photo.width, photo.height, gw, gh) : undefined,
      run,
      encoded,
    );
    const shape = 'inversion' in latents ? latents.inversion.shape : latents.shape;
    const delta = await changeOf(model, latents.source, latents.edited, shape, size, run);
    run.onProgress?.({ phase: 'compositing', step: 0, total: 1 });
    const samples = await compositeChange(photo, delta, mask?.values);
    const unchanged = delta.chw.every((v) => v === 0);
    await mkdir(path.dirname(target), { recursive: true });
    await writePhoto(target, photo, samples, {
      format,
      metadata: this.metadata(
        'edit',
        {
          source: path.basename(params.image),
          sourceSha256: photo.sha256,
          sourcePrompt: params.sourcePrompt,
          prompt: params.prompt,
          mask: params.mask !== undefined ? path.basename(params.mask) : null,
          method: params.method,
          ...('inversion' in latents
            ? {
                levels: latents.inversion.levels,
                gamma: latents.inversion.gamma,
                guidance: latents.inversion.guidance,
              }
            : {}),
          working: [size.width, size.height],
          model: pack.id,
          nfe: latents.nfe + maskNfe,
          autoMask: params.autoMask,
        },
        {
          prompt: params.prompt,
          negativePrompt: params.negativePrompt,
          steps: params.steps ?? ENGINE_DEFAULTS.inversionSteps,
          sampler: params.method === 'bdia' ? 'BDIA-DDIM edit' : 'DDIM inversion edit',
          guidance: params.guidance ?? ENGINE_DEFAULTS.guidance,
          seed: 0,
          width: photo.width,
          height: photo.height,
          model: pack.id,
        },
      ),
    });
    const result: EditResult = {
      image: target,
      width: photo.width,
      height: photo.height,
      workingWidth: size.width,
      workingHeight: size.height,
      nfe: latents.nfe + maskNfe,
      seconds: latents.seconds,
      unchanged,
      warnings: mask?.warnings ?? [],
    };
    if (mask) result.maskCoverage = mask.coverage;
    if (maskNfe) result.maskNfe = maskNfe;
    if (params.maskOut !== undefined && mask) result.mask = path.resolve(params.maskOut);
    if (params.exportInversion !== undefined && 'inversion' in latents) {
      const written = await this.writeInversionFile(
        model,
        latents.inversion,
        latents.source,
        photo.sha256,
        params.exportInversion,
      );
      result.inversion = written.inversion;
    }
    return result;
  }

  /**
   * The automatic mask of a photo for two prompts, at the photo's size, written as a grey PNG
   * (white = edit) — what the Edit view shows for the user to touch up.
   */
  async autoMaskImage(
    p: AutoMaskParams,
    outFile: string,
    run: RunOptions = {},
  ): Promise<{ mask: string; coverage: number; nfe: number; width: number; height: number }> {
    const params = autoMaskParamsSchema.parse(p);
    const model = await this.model(params.model);
    const pack = model.source as LoadedPack;
    const photo = await readPhoto(params.image);
    const size =
      params.workingSize !== undefined
        ? workingSizeFromLongSide(pack, photo.width, photo.height, params.workingSize)
        : workingSize(pack, photo.width, photo.height);
    const image = await workingCopy(photo, size.width, size.height);
    const encoded = await encodeState(model, image);
    const found = await autoMask(
      model,
      encoded.latent,
      encoded.shape,
      { source: params.sourcePrompt, edit: params.prompt, negative: params.negativePrompt },
      {
        ...AUTO_MASK_DEFAULTS,
        ...(params.maskRatio !== undefined ? { ratio: params.maskRatio } : {}),
        guidance: params.guidance ?? ENGINE_DEFAULTS.guidance,
      },
      run,
    );
    const mask = await maskFromGrid(
      found.mask,
      found.width,
      found.height,
      photo.width,
      photo.height,
      params.feather !== undefined ? { feather: params.feather } : {},
    );
    const target = path.resolve(outFile);
    await mkdir(path.dirname(target), { recursive: true });
    await writeMask(target, mask);
    return {
      mask: target,
      coverage: mask.coverage,
      nfe: found.nfe,
      width: photo.width,
      height: photo.height,
    };
  }

  async replayInversion(
    p: ReplayParams,
    outFile: string,
    run: RunOptions = {},
  ): Promise<ReplayResult> {
    const params = replayParamsSchema.parse(p);
    const inv = await readInversion(params.inversion);
    const model = await this.model(params.model ?? inv.meta.packId).catch((err: unknown) => {
      if (params.model !== undefined) throw err;
      throw new RetraceError(
        'BAD_INPUT',
        `${params.inversion} was made with pack '${inv.meta.packId}', which is not installed here: import it (retrace models import FOLDER) or name it with --model`,
      );
    });
    const pack = model.source as LoadedPack;
    const warnings: string[] = [];
    try {
      checkInversionFor(inv, { packId: pack.id, unetSha256: pack.unetSha256 }, params.inversion);
    } catch (err) {
      if (!(err instanceof RetraceError)) throw err;
      if (!params.allowOtherPack) {
        throw new RetraceError(
          err.code,
          `${err.message} (to replay it there anyway, not bit-exact and with the error reported: --allow-other-pack)`,
        );
      }
      warnings.push(
        `${err.message}; replaying on '${pack.id}' as asked: the result is not bit-exact`,
      );
    }
    const runtimeNote = describeRuntimeChange(inv.meta, await model.runtimeRecord());
    if (runtimeNote) warnings.push(runtimeNote);
    const state: InversionState = {
      top: inv.zTop,
      next: inv.zNext,
      shape: inv.shape,
      levels: inv.meta.levels,
      gamma: inv.meta.gamma,
      guidance: inv.meta.guidance,
      prompt: inv.meta.prompt,
      negativePrompt: inv.meta.negativePrompt,
      steps: inv.meta.steps ?? inv.meta.levels.length - 1,
      strength: inv.meta.strength ?? 1,
      width: inv.meta.width,
      height: inv.meta.height,
    };
    if (params.source !== undefined) {
      const result = await this.replayOntoSource(
        model,
        state,
        inv.meta.sourceSha256,
        params,
        outFile,
        run,
      );
      const all = [...warnings, ...(result.warnings ?? [])];
      return all.length > 0 ? { ...result, warnings: all } : result;
    }
    if (params.mask !== undefined) {
      throw new RetraceError(
        'BAD_INPUT',
        '--mask needs --source PHOTO (the photo the inversion was made from)',
      );
    }
    const result = await replayPipeline(
      model,
      state,
      {
        ...(params.prompt !== undefined ? { prompt: params.prompt } : {}),
        ...(params.negativePrompt !== undefined ? { negativePrompt: params.negativePrompt } : {}),
        ...(params.guidance !== undefined ? { guidance: params.guidance } : {}),
      },
      run,
    );
    const prompt = params.prompt ?? inv.meta.prompt;
    const target = path.resolve(outFile);
    await mkdir(path.dirname(target), { recursive: true });
    await writeImage(target, toRgb(result.image), {
      format: formatFromFile(target),
      metadata: this.metadata('replay', {
        inversion: path.basename(params.inversion),
        prompt,
        sourcePrompt: inv.meta.prompt,
        guidance: params.guidance ?? inv.meta.guidance,
        levels: state.levels,
        gamma: state.gamma,
        model: pack.id,
      }),
    });
    const out: ReplayResult = { image: target, nfe: result.nfe, seconds: result.seconds };
    // A replay of the source prompt must land on the source latent; say how far it landed.
    const sourceReplay =
      prompt === inv.meta.prompt &&
      (params.negativePrompt ?? inv.meta.negativePrompt) === inv.meta.negativePrompt &&
      (params.guidance ?? inv.meta.guidance) === inv.meta.guidance;
    if (sourceReplay && inv.zSource) {
      const error = maxAbsDiff(result.latent, inv.zSource);
      out.latentMaxAbsError = error;
      if (error !== 0) {
        warnings.push(
          `the replay landed ${error.toExponential(2)} (latent max error) from the source it was inverted from${warnings.length > 0 ? '' : ', on the same provider and precision: this provider does not repeat its results across sessions'}`,
        );
      }
    }
    if (warnings.length > 0) out.warnings = warnings;
    return out;
  }

  /** A replay carried onto the source photo at its full size (and masked when asked). */
  private async replayOntoSource(
    model: DiffusionModel,
    state: InversionState,
    recordedSha256: string,
    params: z.output<typeof replayParamsSchema>,
    outFile: string,
    run: RunOptions,
  ): Promise<ReplayResult> {
    const source = params.source as string;
    const target = path.resolve(outFile);
    const format = photoFormatOf(target);
    const photo = await readPhoto(source);
    if (photo.sha256 !== recordedSha256) {
      throw new RetraceError(
        'BAD_INPUT',
        `${source}: not the photo ${params.inversion} was made from (its sha256 is ${photo.sha256}, the inversion recorded ${recordedSha256}); the photo changed since the inversion`,
      );
    }
    const mask =
      params.mask !== undefined
        ? await readMask(params.mask, photo.width, photo.height, {
            ...(params.feather !== undefined ? { feather: params.feather } : {}),
          })
        : undefined;
    for (const warning of mask?.warnings ?? [])
      run.onProgress?.({ phase: 'warning', step: 0, total: 0, detail: warning });
    const kept = await this.keptTrajectory(params.inversion);
    const latents = await editFromInversion(
      model,
      state,
      {
        ...(params.prompt !== undefined ? { prompt: params.prompt } : {}),
        ...(params.negativePrompt !== undefined ? { negativePrompt: params.negativePrompt } : {}),
        ...(params.guidance !== undefined ? { guidance: params.guidance } : {}),
      },
      mask ? (gh, gw) => areaDownsample(mask.values, photo.width, photo.height, gw, gh) : undefined,
      run,
      kept,
    );
    const size = { width: state.width, height: state.height };
    const delta = await changeOf(model, latents.source, latents.edited, state.shape, size, run);
    run.onProgress?.({ phase: 'compositing', step: 0, total: 1 });
    const samples = await compositeChange(photo, delta, mask?.values);
    await mkdir(path.dirname(target), { recursive: true });
    await writePhoto(target, photo, samples, {
      format,
      metadata: this.metadata('replay', {
        inversion: path.basename(params.inversion),
        source: path.basename(source),
        prompt: params.prompt ?? state.prompt,
        sourcePrompt: state.prompt,
        mask: params.mask !== undefined ? path.basename(params.mask) : null,
        levels: state.levels,
        gamma: state.gamma,
        model: model.source.id,
        nfe: latents.nfe,
      }),
    });
    const result: ReplayResult = {
      image: target,
      width: photo.width,
      height: photo.height,
      nfe: latents.nfe,
      seconds: latents.seconds,
      unchanged: delta.chw.every((v) => v === 0),
      warnings: mask?.warnings ?? [],
    };
    if (mask) result.maskCoverage = mask.coverage;
    return result;
  }

  async roundtrip(
    p: RoundtripParams,
    out: { image?: string } = {},
    run: RunOptions = {},
  ): Promise<RoundtripResult> {
    const model = await this.model(p.model);
    const { image } = await this.workingImage(model.source as LoadedPack, p.image);
    const report = await roundtripPipeline(model, image, p, run);
    const result: RoundtripResult = {
      method: report.method,
      latentMaxAbsError: report.latentMaxAbsError,
      pixelMaxAbsError: report.pixelMaxAbsError,
      vaeMaxAbsError: report.vaeMaxAbsError,
      nfe: report.nfe,
      seconds: report.seconds,
      steps: report.steps,
      keptLevels: report.levels.length - 1,
    };
    if (report.gamma !== undefined) result.gamma = report.gamma;
    if (out.image) {
      const target = path.resolve(out.image);
      await writeImage(target, toRgb(report.image), { format: formatFromFile(target) });
      result.image = target;
    }
    return result;
  }

  /**
   * What a restore batch does with each file (load → process → save) and where its output goes:
   * one definition shared by `restore` and the queue workers (electron/engine/queue/worker.ts),
   * so a file gives the same bytes wherever it is restored. Each file's noise seed derives from
   * the batch seed and its relative path (`fileSeed`).
   */
  async restorePlan(p: RestoreParams, run: RunOptions = {}): Promise<RestorePlan> {
    const params = restoreParamsSchema.parse(p);
    const model = await this.model(params.model);
    if (model.manifest.task !== 'restoration') {
      throw new RetraceError('BAD_INPUT', `pack ${model.source.id} is not a restoration pack`);
    }
    const outputDir = path.resolve(params.outputDir);
    const format = params.format;
    const outputName =
      format === 'same'
        ? undefined
        : (relative: string) =>
            relative.replace(/\.[^./]+$/, '') + (format === 'jpeg' ? '.jpg' : `.${format}`);
    const stages: BatchStages<RgbImage, RgbImage> = {
      load: (input) => readImage(input.file),
      process: async (image, input, signal) => {
        // The decoded planes become the network's input in place, and later hold the output:
        // a 24 MP photo costs one set of Float32 planes here, not three (RESTORE_MEMORY).
        const restored = await restoreImage(
          model,
          { chw: toModelInput32(image, image.data), width: image.width, height: image.height },
          {
            seed: fileSeed(params.seed, input.relative),
            ...(params.tile !== undefined ? { tile: params.tile } : {}),
            ...(params.overlap !== undefined ? { overlap: params.overlap } : {}),
            ...(params.steps !== undefined ? { steps: params.steps } : {}),
            ...(params.deterministic !== undefined ? { deterministic: params.deterministic } : {}),
          },
          {
            signal,
            onProgress: (e) => run.onProgress?.({ ...e, detail: input.relative }),
          },
        );
        const { width, height, chw } = restored.image;
        const out = fromModelOutput(chw, width, height, image.alpha, image.data);
        out.meta = { ...image.meta };
        return out;
      },
      save: async (image, output, input) => {
        await mkdir(path.dirname(output), { recursive: true });
        await writeImage(output, image, {
          metadata: this.metadata('restore', {
            model: model.source.id,
            seed: params.seed,
            source: input.relative,
          }),
        });
      },
    };
    return { params, model, outputDir, ...(outputName ? { outputName } : {}), stages };
  }

  async restore(
    p: RestoreParams,
    run: RunOptions & {
      onItem?: (item: BatchItem, done: number, total: number) => void;
      /** Restores only the inputs this accepts (e.g. one shard of the folder). */
      select?: (input: BatchInput) => boolean;
      /** Extra top-level fields for the report (e.g. which shard it covers). */
      reportExtra?: Record<string, unknown>;
    } = {},
  ): Promise<RestoreResult> {
    // Progress counts network calls over the folder (sized from the headers, see jobs/work.ts),
    // so the ETA follows the restore's real speed whatever the mix of photo sizes.
    let progress: WorkProgress | undefined;
    const plan = await this.restorePlan(p, {
      ...(run.signal ? { signal: run.signal } : {}),
      ...(run.onProgress ? { onProgress: (e: ProgressEvent) => progress?.update(e) } : {}),
    });
    const { params, model, outputDir, outputName } = plan;
    const found = await collectInputs(params.inputs, params.recursive);
    const inputs = run.select ? found.filter(run.select) : found;
    await mkdir(outputDir, { recursive: true });
    const started = new Date();
    if (run.onProgress) {
      const steps = scheduleLength(scheduleOf(model));
      const output = (input: BatchInput) =>
        path.join(
          outputDir,
          ...(outputName ? outputName(input.relative) : input.relative).split('/'),
        );
      const work = await measureWork(
        inputs,
        (width, height) => restoreTilePlan(model, width, height, params).tiles * steps,
        async (input) => params.skipExisting && (await exists(output(input))),
      );
      progress = new WorkProgress(work, run.onProgress);
    }
    const result = await runBatch<RgbImage, RgbImage>(inputs, plan.stages, {
      outputDir,
      skipExisting: params.skipExisting,
      ...(outputName ? { outputName } : {}),
      ...(run.signal ? { signal: run.signal } : {}),
      ...(progress ? { onProgress: (e: ProgressEvent) => progress?.update(e) } : {}),
      ...(run.onItem ? { onItem: run.onItem } : {}),
    });
    const report = path.resolve(params.report ?? path.join(outputDir, 'retrace-report.json'));
    const written = await writeBatchReport(report, {
      items: result.items.filter((i): i is BatchItem => i !== undefined),
      cancelled: result.cancelled,
      model: model.source.id,
      seed: params.seed,
      ...(run.reportExtra ?? {}),
      started: started.toISOString(),
      finished: new Date().toISOString(),
    });
    return { items: result.items, report, csv: written.csv, cancelled: result.cancelled };
  }

  async close(): Promise<void> {
    const models = [...this.models.values()];
    this.models.clear();
    this.resolved.clear();
    await Promise.all(models.map((m) => m.dispose()));
  }
}

/** 8-bit interleaved RGB of an image (for inversion previews). */
function rgb8(image: RgbImage): Uint8Array {
  const n = image.width * image.height;
  const out = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      const v = image.data[c * n + i] as number;
      out[3 * i + c] = Math.round(Math.min(1, Math.max(0, v)) * 255);
    }
  }
  return out;
}
