// The renderer's only door to the rest of the app: `window.retrace`, put there by the preload
// (or, in the browser tests, by the e2e bridge). Typed from the contract.
import type { RetraceApi } from '../../../electron/preload/api.js';
export type { RetraceApi } from '../../../electron/preload/api.js';
export type {
  InvokeChannel,
  InvokeReply,
  InvokeRequest,
  JobEvent,
  JobRequest,
  Settings,
} from '../../../electron/contract/channels.js';

declare global {
  interface Window {
    retrace: RetraceApi;
  }
}

export interface ImageRef {
  url: string;
  path: string;
  width: number;
  height: number;
}

export function api(): RetraceApi {
  const retrace = (globalThis as { retrace?: RetraceApi }).retrace;
  if (!retrace) throw new Error('window.retrace is missing: the preload did not run');
  return retrace;
}

/** The message of anything thrown, for showing in the UI. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
