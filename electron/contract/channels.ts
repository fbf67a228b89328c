// The IPC contract between the renderer (through the preload) and main: every channel, its
// request schema and its reply schema. Main validates every request against these before doing
// anything; the preload exposes exactly these calls and nothing else; the e2e bridge speaks the
// same contract. This module imports nothing platform-specific.
import { z } from 'zod';
import {
  autoMaskParamsSchema,
  generateParamsSchema,
  invertParamsSchema,
  replayParamsSchema,
  restoreParamsSchema,
  roundtripParamsSchema,
} from './jobs.js';

const filePath = z.string().min(1).max(4096);
const jobId = z.string().regex(/^job-[a-z0-9-]{1,64}$/);

/**
 * Over IPC a job names its model by pack id only: a folder path would load ONNX files from
 * anywhere, past `packs:import`'s checks. (The CLI, run by the user, still takes folders.)
 */
export const packIdSchema = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,63}$/,
    'must be a pack id (a-z 0-9 . _ -), not a path; import a folder on the Models view first',
  );

export const jobRequestSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('generate'),
    params: generateParamsSchema.extend({ model: packIdSchema }),
  }),
  z.strictObject({
    kind: z.literal('invert'),
    params: invertParamsSchema.extend({ model: packIdSchema }),
  }),
  z.strictObject({
    kind: z.literal('replay'),
    params: replayParamsSchema.extend({ model: packIdSchema.optional() }),
  }),
  z.strictObject({
    kind: z.literal('roundtrip'),
    params: roundtripParamsSchema.extend({ model: packIdSchema }),
  }),
  z.strictObject({
    kind: z.literal('restore'),
    params: restoreParamsSchema.extend({ model: packIdSchema }),
  }),
  z.strictObject({
    kind: z.literal('automask'),
    params: autoMaskParamsSchema.extend({ model: packIdSchema }),
  }),
]);

/** A mask painted in the Edit view: a PNG data URL (white = edit), at most 8192 px a side. */
export const MASK_DATA_URL_PREFIX = 'data:image/png;base64,';
export const MAX_MASK_DATA_URL = 48 * 2 ** 20;
export type JobRequest = z.input<typeof jobRequestSchema>;
export type JobKind = JobRequest['kind'];

/** An image the renderer may show: a `retrace://` URL served from the allow-list, plus its path. */
export const imageRefSchema = z.strictObject({
  url: z.string(),
  path: filePath,
  width: z.number().int().positive(),
  height: z.number().int().positive(),
});

export const jobProgressSchema = z.strictObject({
  phase: z.string(),
  step: z.number().int().nonnegative(),
  total: z.number().int().nonnegative(),
  detail: z.string().optional(),
  etaSeconds: z.number().nonnegative().optional(),
  preview: imageRefSchema.optional(),
});

export const jobEventSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('queued'), jobId, kind: z.string() }),
  z.strictObject({ type: z.literal('progress'), jobId, progress: jobProgressSchema }),
  z.strictObject({ type: z.literal('item'), jobId, item: z.record(z.string(), z.unknown()) }),
  z.strictObject({ type: z.literal('done'), jobId, result: z.record(z.string(), z.unknown()) }),
  z.strictObject({ type: z.literal('failed'), jobId, error: z.string() }),
  z.strictObject({ type: z.literal('cancelled'), jobId }),
]);
export type JobEvent = z.infer<typeof jobEventSchema>;

export const settingsSchema = z.strictObject({
  provider: z.enum(['auto', 'cpu', 'cuda', 'dml', 'coreml', 'webgpu']).default('auto'),
  threads: z.number().int().min(0).max(256).default(0),
  outputDir: filePath.optional(),
  outputFormat: z.enum(['png', 'jpeg', 'webp']).default('png'),
  theme: z.enum(['system', 'light', 'dark']).default('system'),
});
export type Settings = z.output<typeof settingsSchema>;

const none = z.strictObject({});

/** The scheme main registers for images; the renderer never sees `file://`. */
export const IMAGE_SCHEME = 'retrace';

/** The URL under which main's protocol handler serves the file at `file` (an absolute path). */
export function imageUrlFor(file: string): string {
  return `${IMAGE_SCHEME}://image/${encodeURIComponent(file)}`;
}

/** The reverse of `imageUrlFor`; `undefined` for anything that is not one of ours. */
export function filePathFromImageUrl(url: string): string | undefined {
  const prefix = `${IMAGE_SCHEME}://image/`;
  if (!url.startsWith(prefix)) return undefined;
  const rest = url.slice(prefix.length).split(/[?#]/)[0] ?? '';
  try {
    const decoded = decodeURIComponent(rest);
    return decoded.length > 0 ? decoded : undefined;
  } catch {
    return undefined;
  }
}

/** Every request/reply channel. Names are `area:verb`. */
export const invokeChannels = {
  'app:info': { request: none, reply: z.record(z.string(), z.unknown()) },
  'packs:list': { request: none, reply: z.array(z.record(z.string(), z.unknown())) },
  'packs:info': {
    request: z.strictObject({ id: z.string().min(1) }),
    reply: z.record(z.string(), z.unknown()),
  },
  'packs:import': {
    request: z.strictObject({ folder: filePath }),
    reply: z.record(z.string(), z.unknown()),
  },
  'jobs:start': { request: jobRequestSchema, reply: z.strictObject({ jobId }) },
  'jobs:cancel': {
    request: z.strictObject({ jobId }),
    reply: z.strictObject({ cancelled: z.boolean() }),
  },
  'jobs:list': { request: none, reply: z.array(z.record(z.string(), z.unknown())) },
  'settings:get': { request: none, reply: settingsSchema },
  'settings:set': { request: settingsSchema.partial(), reply: settingsSchema },
  'runtime:providers': { request: none, reply: z.record(z.string(), z.unknown()) },
  'dialog:openImage': { request: none, reply: imageRefSchema.nullable() },
  'dialog:openFolder': { request: none, reply: z.strictObject({ path: filePath }).nullable() },
  'dialog:saveFile': {
    request: z.strictObject({
      defaultName: z.string().max(255),
      filters: z
        .array(z.strictObject({ name: z.string(), extensions: z.array(z.string()) }))
        .max(8),
    }),
    reply: z.strictObject({ path: filePath }).nullable(),
  },
  'files:exportImage': {
    request: z.strictObject({
      source: filePath,
      destination: filePath,
      format: z.enum(['png', 'jpeg', 'webp']),
      metadata: z.record(z.string(), z.unknown()).optional(),
    }),
    reply: z.strictObject({ path: filePath }),
  },
  'files:copy': {
    request: z.strictObject({ source: filePath, destination: filePath }),
    reply: z.strictObject({ path: filePath }),
  },
  'files:openImage': { request: z.strictObject({ path: filePath }), reply: imageRefSchema },
  'dialog:openInversion': { request: none, reply: z.strictObject({ path: filePath }).nullable() },
  /** The `__metadata__` of an inversion file: source prompt, pack, levels… (strings). */
  'files:inversionInfo': {
    request: z.strictObject({ path: filePath }),
    reply: z.record(z.string(), z.string()),
  },
  'app:recent': { request: none, reply: z.array(filePath) },
  /** Saves a painted mask into the output folder; its path can then be a job's `mask`. */
  'files:saveMask': {
    request: z.strictObject({
      dataUrl: z.string().startsWith(MASK_DATA_URL_PREFIX).max(MAX_MASK_DATA_URL),
    }),
    reply: z.strictObject({ path: filePath, width: z.number().int(), height: z.number().int() }),
  },
} as const;

export type InvokeChannel = keyof typeof invokeChannels;
export type InvokeRequest<C extends InvokeChannel> = z.input<(typeof invokeChannels)[C]['request']>;
export type InvokeReply<C extends InvokeChannel> = z.output<(typeof invokeChannels)[C]['reply']>;

/** Main → renderer events. */
export const eventChannels = {
  'jobs:event': jobEventSchema,
  'menu:command': z.strictObject({
    command: z.enum([
      'open-image',
      'open-folder',
      'open-recent',
      'export',
      'undo',
      'redo',
      'compare',
      'settings',
    ]),
    /** The file, for `open-recent`. */
    path: filePath.optional(),
  }),
} as const;
export type EventChannel = keyof typeof eventChannels;

/**
 * Preload → main, never reachable from the page: the paths of files the user really dropped on
 * the window (a trusted drop event; the paths come from Electron's webUtils in the preload's
 * isolated world). It is not an invoke channel, so `window.retrace.invoke` cannot name it.
 */
export const DROP_REPORT_CHANNEL = 'grants:dropped';
export const dropReportSchema = z.array(filePath).min(1).max(1000);

export function isInvokeChannel(name: unknown): name is InvokeChannel {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(invokeChannels, name);
}

/** One line naming each bad field of a failed parse, e.g. `params.steps: Too big: expected…`. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 4)
    .map((issue) => `${issue.path.length ? issue.path.join('.') : '(request)'}: ${issue.message}`)
    .join('; ');
}
