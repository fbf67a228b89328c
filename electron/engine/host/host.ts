// The engine host: a transport-agnostic dispatcher between the IPC contract and the Engine.
// Requests arrive as (channel, payload) pairs, are validated against the contract's schemas and
// turned into Engine calls or JobQueue jobs; job events go out through `post` with progress, ETA
// and images as `{url, path, width, height}` references. The utilityProcess entry and the e2e
// bridge both drive this same object, so the browser tests exercise the code the app runs.
import { copyFile, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import sharp, { type OutputInfo } from 'sharp';
import { z } from 'zod';
import {
  describeIssues,
  imageUrlFor,
  invokeChannels,
  jobRequestSchema,
  MASK_DATA_URL_PREFIX,
  type InvokeChannel,
} from '../../contract/channels.js';
import type {
  AutoMaskParams,
  GenerateParams,
  InvertParams,
  ReplayParams,
  RestoreParams,
  RoundtripParams,
} from '../../contract/jobs.js';
import { describeError, RetraceError, throwIfAborted } from '../errors.js';
import type { BatchItem } from '../jobs/batch.js';
import { JobQueue, type JobContext, type JobEventOut } from '../jobs/queue.js';
import type { ProgressEvent, RunOptions } from '../progress.js';
import type { ProviderPreference } from '../runtime/session.js';

export type OutputFormat = 'png' | 'jpeg' | 'webp';

/** The Engine methods the host calls (the facade in engine.ts satisfies it structurally). */
export interface EngineApi {
  setRuntime(r: { provider?: ProviderPreference; threads?: number }): unknown;
  listPacks(): Promise<object[]>;
  packInfo(id: string): Promise<object>;
  importPack(folder: string): Promise<object>;
  providers(): unknown;
  generate(
    p: GenerateParams,
    out: { dir: string; format?: OutputFormat },
    run: RunOptions,
  ): Promise<{
    images: { file: string; seed: number; width: number; height: number }[];
    nfe: number;
    seconds: number;
    params: object;
  }>;
  invertImage(
    p: InvertParams,
    outFile: string,
    run: RunOptions,
  ): Promise<{
    inversion: string;
    preview: string;
    nfe: number;
    seconds: number;
    levels: number[];
    caption?: string;
  }>;
  replayInversion(
    p: ReplayParams,
    outFile: string,
    run: RunOptions,
  ): Promise<{ image: string; nfe: number; seconds: number; latentMaxAbsError?: number }>;
  roundtrip(
    p: RoundtripParams,
    out: { image?: string },
    run: RunOptions,
  ): Promise<{
    latentMaxAbsError: number;
    pixelMaxAbsError: number;
    nfe: number;
    seconds: number;
    image?: string;
  }>;
  restore(
    p: RestoreParams,
    run: RunOptions & { onItem?: (item: BatchItem, done: number, total: number) => void },
  ): Promise<{ items: BatchItem[]; report: string; csv: string; cancelled: boolean }>;
  autoMaskImage(
    p: AutoMaskParams,
    outFile: string,
    run: RunOptions,
  ): Promise<{ mask: string; coverage: number; nfe: number; width: number; height: number }>;
  close(): Promise<void>;
}

/** What the host sends out besides replies: job events, already in the contract's shape. */
export interface HostEvent {
  channel: 'jobs:event';
  payload: Record<string, unknown> & { type: string; jobId: string };
}

export interface EngineHostOptions {
  /** Folder under which jobs write their results (one sub-folder per kind). */
  outputRoot: string;
  post: (event: HostEvent) => void;
  /** How a file becomes a URL the renderer can load; default `retrace://image/<path>`. */
  imageUrl?: (file: string) => string;
  outputFormat?: OutputFormat;
}

/** Channels the host answers; main handles the rest (dialogs, settings, recent files). */
export const HOST_CHANNELS = [
  'packs:list',
  'packs:info',
  'packs:import',
  'jobs:start',
  'jobs:cancel',
  'jobs:list',
  'runtime:providers',
  'files:openImage',
  'files:exportImage',
  'files:inversionInfo',
  'files:saveMask',
  'host:configure',
] as const;
export type HostChannel = (typeof HOST_CHANNELS)[number];

/** Main → host only: settings that change how the engine runs or where outputs go. */
export const hostConfigureSchema = z.strictObject({
  provider: z.enum(['auto', 'cpu', 'cuda', 'dml', 'coreml', 'webgpu']).optional(),
  threads: z.number().int().min(0).max(256).optional(),
  outputRoot: z.string().min(1).optional(),
  outputFormat: z.enum(['png', 'jpeg', 'webp']).optional(),
});

/** Parses a request against its contract schema; a bad one is refused naming the field. */
function parse<S extends z.ZodType>(schema: S, request: unknown, channel: string): z.output<S> {
  const result = schema.safeParse(request);
  if (!result.success)
    throw new RetraceError('BAD_INPUT', `${channel}: ${describeIssues(result.error)}`);
  return result.data;
}

function parseChannel<C extends InvokeChannel>(
  channel: C,
  request: unknown,
): z.output<(typeof invokeChannels)[C]['request']> {
  return parse(invokeChannels[channel].request as z.ZodType, request, channel) as z.output<
    (typeof invokeChannels)[C]['request']
  >;
}

export function isHostChannel(name: string): name is HostChannel {
  return (HOST_CHANNELS as readonly string[]).includes(name);
}

export interface ImageRef {
  url: string;
  path: string;
  width: number;
  height: number;
}

export interface EngineHost {
  handle(channel: string, request: unknown): Promise<unknown>;
  /** Resolves when no job is queued or running. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.avif']);

function stem(file: string): string {
  const base = path.basename(file);
  return base.replace(/(\.inversion)?\.[^.]+$/, '').replace(/[^\w.-]+/g, '_') || 'image';
}

/** Reads the `__metadata__` block of a safetensors file without reading its tensors. */
export async function readSafetensorsMetadata(file: string): Promise<Record<string, string>> {
  const handle = await open(file, 'r').catch((err: unknown) => {
    throw new RetraceError('BAD_FILE', `${file}: cannot be read (${describeError(err)})`);
  });
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await handle.read(head, 0, 8, 0);
    const size = bytesRead === 8 ? Number(head.readBigUInt64LE(0)) : -1;
    if (size <= 1 || size > 100_000_000) {
      throw new RetraceError('BAD_FILE', `${file}: not a safetensors file (bad header length)`);
    }
    const json = Buffer.alloc(size);
    await handle.read(json, 0, size, 8);
    let header: unknown;
    try {
      header = JSON.parse(json.toString('utf8'));
    } catch {
      throw new RetraceError('BAD_FILE', `${file}: not a safetensors file (header is not JSON)`);
    }
    const meta = (header as { __metadata__?: unknown }).__metadata__;
    const parsed = z.record(z.string(), z.string()).safeParse(meta ?? {});
    if (!parsed.success)
      throw new RetraceError('BAD_FILE', `${file}: __metadata__ must map strings to strings`);
    if (parsed.data.format !== 'retrace-inversion/1') {
      throw new RetraceError(
        'BAD_FILE',
        `${file}: not a Retrace inversion (format is ${parsed.data.format ?? 'missing'})`,
      );
    }
    return parsed.data;
  } finally {
    await handle.close();
  }
}

/** Largest per-channel difference of two images of the same size, in [0, 1]. */
async function pixelMaxAbsError(a: string, b: string): Promise<number> {
  const [ra, rb] = await Promise.all(
    [a, b].map((f) => sharp(f).removeAlpha().raw().toBuffer({ resolveWithObject: true })),
  );
  if (!ra || !rb || ra.info.width !== rb.info.width || ra.info.height !== rb.info.height) {
    throw new RetraceError('RUNTIME', `round trip: ${a} and ${b} differ in size`);
  }
  let max = 0;
  for (let i = 0; i < ra.data.length; i++) {
    const d = Math.abs((ra.data[i] ?? 0) - (rb.data[i] ?? 0));
    if (d > max) max = d;
  }
  return max / 255;
}

export function createEngineHost(engine: EngineApi, options: EngineHostOptions): EngineHost {
  const queue = new JobQueue();
  const toUrl = options.imageUrl ?? imageUrlFor;
  let outputRoot = path.resolve(options.outputRoot);
  let outputFormat: OutputFormat = options.outputFormat ?? 'png';
  let runCounter = 0;
  // Events are posted in order even though turning a preview path into a reference is async.
  let posting: Promise<void> = Promise.resolve();

  const runName = (): string => {
    runCounter += 1;
    return `${new Date().toISOString().replace(/[:.]/g, '-')}-${runCounter}`;
  };

  async function imageRef(file: string): Promise<ImageRef> {
    const meta = await sharp(file)
      .metadata()
      .catch((err: unknown) => {
        throw new RetraceError('BAD_FILE', `${file}: not a readable image (${describeError(err)})`);
      });
    if (!meta.width || !meta.height) throw new RetraceError('BAD_FILE', `${file}: no image size`);
    return { url: toUrl(file), path: file, width: meta.width, height: meta.height };
  }

  async function toContractEvent(e: JobEventOut): Promise<HostEvent['payload']> {
    if (e.type !== 'progress') return e;
    const { preview, etaSeconds, ...rest } = e.progress;
    const progress: Record<string, unknown> = { ...rest };
    if (etaSeconds !== undefined && Number.isFinite(etaSeconds)) progress.etaSeconds = etaSeconds;
    if (preview) {
      // A preview that cannot be read is dropped: it is a nicety, the job goes on.
      const ref = await imageRef(preview).catch(() => undefined);
      if (ref) progress.preview = ref;
    }
    return { type: 'progress', jobId: e.jobId, progress };
  }

  queue.onEvent((e) => {
    posting = posting
      .then(() => toContractEvent(e))
      .then((payload) => options.post({ channel: 'jobs:event', payload }))
      .catch(() => undefined);
  });

  function run(ctx: JobContext): RunOptions {
    return { signal: ctx.signal, onProgress: (p: ProgressEvent) => ctx.onProgress(p) };
  }

  async function generateJob(params: GenerateParams, ctx: JobContext) {
    const dir = path.join(outputRoot, 'generated', runName());
    const result = await engine.generate(params, { dir, format: outputFormat }, run(ctx));
    const images = [];
    for (const image of result.images) {
      images.push({ ...(await imageRef(image.file)), seed: image.seed });
    }
    return { images, nfe: result.nfe, seconds: result.seconds, params: result.params };
  }

  /** Inverts, then replays the source prompt at once: the round trip proves the file is exact. */
  async function invertJob(params: InvertParams, ctx: JobContext) {
    const name = `${stem(params.image)}-${runName()}`;
    const inversionFile = path.join(outputRoot, 'inversions', `${name}.inversion.safetensors`);
    const inverted = await engine.invertImage(params, inversionFile, run(ctx));
    throwIfAborted(ctx.signal);
    const replayFile = path.join(outputRoot, 'inversions', `${name}.roundtrip.png`);
    const replayed = await engine.replayInversion(
      { inversion: inverted.inversion },
      replayFile,
      run(ctx),
    );
    const roundtrip: Record<string, unknown> = {
      image: await imageRef(replayed.image),
      pixelMaxAbsError: await pixelMaxAbsError(inverted.preview, replayed.image),
    };
    if (replayed.latentMaxAbsError !== undefined)
      roundtrip.latentMaxAbsError = replayed.latentMaxAbsError;
    return {
      inversion: inverted.inversion,
      preview: await imageRef(inverted.preview),
      levels: inverted.levels,
      nfe: inverted.nfe + replayed.nfe,
      seconds: inverted.seconds + replayed.seconds,
      ...(inverted.caption !== undefined ? { caption: inverted.caption } : {}),
      roundtrip,
    };
  }

  async function replayJob(params: ReplayParams, ctx: JobContext) {
    const file = path.join(outputRoot, 'edits', `${stem(params.inversion)}-${runName()}.png`);
    const result = await engine.replayInversion(params, file, run(ctx));
    return {
      image: await imageRef(result.image),
      nfe: result.nfe,
      seconds: result.seconds,
      ...(result.latentMaxAbsError !== undefined
        ? { latentMaxAbsError: result.latentMaxAbsError }
        : {}),
    };
  }

  async function roundtripJob(params: RoundtripParams, ctx: JobContext) {
    const file = path.join(outputRoot, 'roundtrips', `${stem(params.image)}-${runName()}.png`);
    const result = await engine.roundtrip(params, { image: file }, run(ctx));
    return {
      latentMaxAbsError: result.latentMaxAbsError,
      pixelMaxAbsError: result.pixelMaxAbsError,
      nfe: result.nfe,
      seconds: result.seconds,
      ...(result.image ? { image: await imageRef(result.image) } : {}),
    };
  }

  async function restoreJob(params: RestoreParams, ctx: JobContext) {
    const result = await engine.restore(params, {
      ...run(ctx),
      onItem: (item, done, total) => {
        // Every file of a batch is reported as it finishes, so the list fills in live.
        ctx.emitItem({ ...item, done, total, ...(item.output ? { url: toUrl(item.output) } : {}) });
      },
    });
    const items = [];
    for (const item of result.items) {
      const ref = item.status === 'ok' && item.output ? await imageRef(item.output) : undefined;
      items.push({ ...item, ...(ref ? { image: ref } : {}) });
    }
    return { items, report: result.report, csv: result.csv, cancelled: result.cancelled };
  }

  async function autoMaskJob(params: AutoMaskParams, ctx: JobContext) {
    const file = path.join(outputRoot, 'masks', `${stem(params.image)}-auto-${runName()}.png`);
    const result = await engine.autoMaskImage(params, file, run(ctx));
    return {
      mask: await imageRef(result.mask),
      coverage: result.coverage,
      nfe: result.nfe,
    };
  }

  /** A painted mask (PNG data URL) saved as an 8-bit grey PNG in the output folder. */
  async function saveMask(request: unknown) {
    const { dataUrl } = parseChannel('files:saveMask', request);
    const bytes = Buffer.from(dataUrl.slice(MASK_DATA_URL_PREFIX.length), 'base64');
    let info: OutputInfo;
    let grey: Buffer;
    try {
      const meta = await sharp(bytes).metadata();
      if (meta.format !== 'png') throw new Error(`a ${meta.format} image, not PNG`);
      if (meta.width > 8192 || meta.height > 8192)
        throw new Error(`${meta.width}×${meta.height} is over 8192 px a side`);
      // Painted strokes are white on transparent or black: alpha where it varies, else grey.
      const stats = await sharp(bytes).stats();
      const alpha = meta.hasAlpha ? stats.channels[stats.channels.length - 1] : undefined;
      const base = sharp(bytes);
      const channel =
        alpha && alpha.min < 255
          ? base.extractChannel('alpha')
          : base.flatten().toColourspace('b-w');
      ({ data: grey, info } = await channel
        .extractChannel(0)
        .raw()
        .toBuffer({ resolveWithObject: true }));
    } catch (err) {
      const why = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
      throw new RetraceError('BAD_INPUT', `files:saveMask: not a usable mask (${why})`);
    }
    const file = path.join(outputRoot, 'masks', `painted-${runName()}.png`);
    await mkdir(path.dirname(file), { recursive: true });
    const temp = `${file}.retrace-partial`;
    await sharp(grey, { raw: { width: info.width, height: info.height, channels: 1 } })
      .toColourspace('b-w')
      .png()
      .toFile(temp);
    await rename(temp, file);
    return { path: file, width: info.width, height: info.height };
  }

  function startJob(request: unknown): { jobId: string } {
    const job = parse(jobRequestSchema, request, 'jobs:start');
    const kind = job.kind;
    const jobId = queue.start(kind, async (ctx) => {
      switch (job.kind) {
        case 'generate':
          return generateJob(job.params, ctx);
        case 'invert':
          return invertJob(job.params, ctx);
        case 'replay':
          return replayJob(job.params, ctx);
        case 'roundtrip':
          return roundtripJob(job.params, ctx);
        case 'restore':
          return restoreJob(job.params, ctx);
        case 'automask':
          return autoMaskJob(job.params, ctx);
      }
    });
    return { jobId };
  }

  async function exportImage(request: unknown) {
    const r = parseChannel('files:exportImage', request);
    const destination = path.resolve(r.destination);
    if (path.resolve(r.source) === destination)
      throw new RetraceError('BAD_INPUT', `${destination}: export would overwrite its source`);
    const sourceExt = path.extname(r.source).toLowerCase().replace('jpg', 'jpeg');
    const temp = `${destination}.retrace-partial`;
    try {
      if (sourceExt === `.${r.format}`) {
        // Same format: the bytes as the engine wrote them, parameters chunk included.
        await copyFile(r.source, temp);
      } else {
        const description = JSON.stringify(r.metadata ?? {});
        await sharp(r.source)
          .toFormat(r.format)
          .withExif({ IFD0: { ImageDescription: description, Software: 'Retrace' } })
          .toFile(temp);
      }
      await rename(temp, destination);
    } catch (err) {
      await rm(temp, { force: true });
      throw err instanceof RetraceError
        ? err
        : new RetraceError('BAD_FILE', `${destination}: export failed (${describeError(err)})`);
    }
    return { path: destination };
  }

  async function openImage(request: unknown) {
    const { path: file } = parseChannel('files:openImage', request);
    if (!IMAGE_EXTENSIONS.has(path.extname(file).toLowerCase()))
      throw new RetraceError('BAD_FILE', `${file}: not an image Retrace reads`);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) throw new RetraceError('BAD_FILE', `${file}: no such file`);
    return imageRef(path.resolve(file));
  }

  async function configure(request: unknown) {
    const c = parse(hostConfigureSchema, request, 'host:configure');
    if (c.outputRoot) outputRoot = path.resolve(c.outputRoot);
    if (c.outputFormat) outputFormat = c.outputFormat;
    if (c.provider !== undefined || c.threads !== undefined) {
      await engine.setRuntime({
        ...(c.provider !== undefined ? { provider: c.provider } : {}),
        ...(c.threads !== undefined ? { threads: c.threads } : {}),
      });
    }
    await mkdir(outputRoot, { recursive: true });
    return { outputRoot, outputFormat };
  }

  async function handle(channel: string, request: unknown): Promise<unknown> {
    if (!isHostChannel(channel))
      throw new RetraceError('BAD_INPUT', `engine host: unknown channel ${channel}`);
    switch (channel) {
      case 'packs:list':
        return engine.listPacks();
      case 'packs:info':
        return engine.packInfo(parseChannel('packs:info', request).id);
      case 'packs:import':
        return engine.importPack(parseChannel('packs:import', request).folder);
      case 'jobs:start':
        return startJob(request);
      case 'jobs:cancel':
        return { cancelled: queue.cancel(parseChannel('jobs:cancel', request).jobId) };
      case 'jobs:list':
        return queue.list();
      case 'runtime:providers':
        return engine.providers();
      case 'files:openImage':
        return openImage(request);
      case 'files:exportImage':
        return exportImage(request);
      case 'files:inversionInfo':
        return readSafetensorsMetadata(parseChannel('files:inversionInfo', request).path);
      case 'files:saveMask':
        return saveMask(request);
      case 'host:configure':
        return configure(request);
    }
  }

  return {
    handle,
    idle: async () => {
      await queue.idle();
      await posting;
    },
    async close() {
      for (const job of queue.list()) {
        if (job.status === 'queued' || job.status === 'running') queue.cancel(job.jobId);
      }
      await queue.idle();
      await engine.close();
    },
  };
}
