// The message protocol between main (or the e2e bridge) and the engine host process: numbered
// requests, one reply each, and job events in between. Plain data only, so it crosses
// Electron's parentPort, Node's child-process IPC and a MessagePort alike.
import { describeError } from '../errors.js';
import type { EngineHost, HostEvent } from './host.js';

/** Sent once, first, by the parent: where things live and how the engine should run. */
export interface HostInit {
  type: 'init';
  userDir: string;
  outputRoot: string;
  packDirs?: string[];
  provider?: 'auto' | 'cpu' | 'cuda' | 'dml' | 'coreml' | 'webgpu';
  threads?: number;
  outputFormat?: 'png' | 'jpeg' | 'webp';
  /** The e2e bridge serves images over HTTP; Electron uses the retrace:// scheme (the default). */
  imageUrlPrefix?: string;
}

export interface HostRequest {
  type: 'request';
  id: number;
  channel: string;
  request: unknown;
}

export type HostReply =
  | { type: 'reply'; id: number; ok: true; reply: unknown }
  | { type: 'reply'; id: number; ok: false; error: string };

export type HostOutgoing = HostReply | ({ type: 'event' } & HostEvent) | { type: 'ready' };
export type HostIncoming = HostInit | HostRequest;

export function isHostRequest(message: unknown): message is HostRequest {
  const m = message as Partial<HostRequest> | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    m.type === 'request' &&
    typeof m.id === 'number' &&
    typeof m.channel === 'string'
  );
}

/** Answers one request; never throws (a failure is a reply with the one-line message). */
export async function answer(host: EngineHost, message: HostRequest): Promise<HostReply> {
  try {
    const reply = await host.handle(message.channel, message.request);
    return { type: 'reply', id: message.id, ok: true, reply };
  } catch (err) {
    return { type: 'reply', id: message.id, ok: false, error: describeError(err) };
  }
}
