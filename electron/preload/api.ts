// The one object the renderer gets as `window.retrace`: typed calls over the contract's channels
// and nothing else (no raw ipcRenderer, no Node). Built from injected ipc functions so the
// surface is tested without Electron; the e2e bridge implements the same type.
import {
  eventChannels,
  isInvokeChannel,
  type EventChannel,
  type InvokeChannel,
  type InvokeReply,
  type InvokeRequest,
} from '../contract/channels.js';
import type { z } from 'zod';

export type EventPayload<E extends EventChannel> = z.output<(typeof eventChannels)[E]>;

export interface RetraceApi {
  invoke<C extends InvokeChannel>(channel: C, request: InvokeRequest<C>): Promise<InvokeReply<C>>;
  on<E extends EventChannel>(channel: E, listener: (payload: EventPayload<E>) => void): () => void;
  /** The path of a dropped file (Electron no longer puts it on File). */
  pathForFile(file: File): string;
}

type Envelope = { ok: true; reply: unknown } | { ok: false; error: string };

export interface IpcRendererLike {
  invoke(channel: string, payload: unknown): Promise<unknown>;
  on(channel: string, listener: (event: unknown, payload: unknown) => void): unknown;
  removeListener(channel: string, listener: (event: unknown, payload: unknown) => void): unknown;
}

/** What the preload needs of a drop event (a DragEvent in the app). */
export interface DropEventLike {
  isTrusted: boolean;
  dataTransfer: { files: ArrayLike<File> } | null;
}

export interface DropTarget {
  addEventListener(type: 'drop', listener: (event: DropEventLike) => void, capture: boolean): void;
}

/**
 * Reports the paths of files the user drops on the window to main, which grants them. Runs in
 * the preload's isolated world, in the capture phase (before any page handler). A drop the page
 * synthesises (`dispatchEvent`) is not trusted and is ignored, and a File the page builds has no
 * path, so the page cannot grant itself anything this way. `trustedOnly` is off only in the
 * browser tests' stand-in, whose drops are synthetic by construction.
 */
export function installDropReporter(
  target: DropTarget,
  getPathForFile: (file: File) => string,
  report: (paths: string[]) => void,
  options: { trustedOnly: boolean } = { trustedOnly: true },
): void {
  target.addEventListener(
    'drop',
    (event) => {
      if (options.trustedOnly && !event.isTrusted) return;
      const files = event.dataTransfer?.files;
      if (!files) return;
      const paths: string[] = [];
      for (let i = 0; i < files.length; i += 1) {
        const file = files[i];
        const p = file ? getPathForFile(file) : '';
        if (p) paths.push(p);
      }
      if (paths.length > 0) report(paths);
    },
    true,
  );
}

function isEventChannel(name: unknown): name is EventChannel {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(eventChannels, name);
}

export function createApi(
  ipc: IpcRendererLike,
  getPathForFile: (file: File) => string,
): RetraceApi {
  return {
    async invoke(channel, request) {
      if (!isInvokeChannel(channel)) throw new Error(`unknown channel ${String(channel)}`);
      const envelope = (await ipc.invoke(channel, request)) as Envelope;
      if (!envelope.ok) throw new Error(envelope.error);
      return envelope.reply as never;
    },
    on(channel, listener) {
      if (!isEventChannel(channel)) throw new Error(`unknown event channel ${String(channel)}`);
      const schema = eventChannels[channel];
      const wrapped = (_event: unknown, payload: unknown) => {
        const parsed = schema.safeParse(payload);
        if (parsed.success) listener(parsed.data as never);
      };
      ipc.on(channel, wrapped);
      return () => void ipc.removeListener(channel, wrapped);
    },
    pathForFile: (file) => getPathForFile(file),
  };
}
