// IPC routing: every channel of the contract is registered here and nowhere else. Each message
// is checked twice before anything runs — the sender must be the app's own top-level page, and
// the payload must parse against the channel's schema — and every reply travels in an envelope
// so the renderer gets our one-line message, not Electron's wrapped stack.
import type { IpcMainEvent, IpcMainInvokeEvent } from 'electron';
import {
  describeIssues,
  DROP_REPORT_CHANNEL,
  dropReportSchema,
  invokeChannels,
  type InvokeChannel,
  type InvokeReply,
} from '../contract/channels.js';
import type { z } from 'zod';
import { isAppUrl } from './windows.js';

export type Envelope<T> = { ok: true; reply: T } | { ok: false; error: string };

export type Handlers = {
  [C in InvokeChannel]: (
    request: z.output<(typeof invokeChannels)[C]['request']>,
  ) => Promise<InvokeReply<C> | unknown> | InvokeReply<C> | unknown;
};

interface SenderFrame {
  url: string;
  parent: unknown;
}

/** The sender is trusted only when it is the app's own page in the top-level frame. */
export function isTrustedSender(event: { senderFrame: SenderFrame | null }): boolean {
  const frame = event.senderFrame;
  return frame !== null && frame.parent === null && isAppUrl(frame.url);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Validates and runs one request; exported for tests (Electron only adds the transport). */
export async function dispatch<C extends InvokeChannel>(
  channel: C,
  event: { senderFrame: SenderFrame | null },
  payload: unknown,
  handlers: Handlers,
): Promise<Envelope<unknown>> {
  if (!isTrustedSender(event)) {
    return { ok: false, error: `${channel}: refused, the request did not come from the app` };
  }
  const parsed = invokeChannels[channel].request.safeParse(payload);
  if (!parsed.success) return { ok: false, error: `${channel}: ${describeIssues(parsed.error)}` };
  try {
    const handler = handlers[channel] as (request: unknown) => unknown;
    return { ok: true, reply: await handler(parsed.data) };
  } catch (err) {
    return { ok: false, error: message(err) };
  }
}

interface IpcMainLike {
  handle(channel: string, listener: (event: IpcMainInvokeEvent, payload: unknown) => unknown): void;
}

export function registerIpc(ipcMain: IpcMainLike, handlers: Handlers): void {
  for (const channel of Object.keys(invokeChannels) as InvokeChannel[]) {
    ipcMain.handle(channel, (event, payload) => dispatch(channel, event, payload, handlers));
  }
}

/**
 * A drop the preload reported (see preload/api.ts): granted only when it comes from the app's
 * own top-level page and is a list of paths. Returns the paths granted (for tests and logs).
 */
export function acceptDropReport(
  event: { senderFrame: SenderFrame | null },
  payload: unknown,
  grants: { addDropped(paths: readonly string[]): string[] },
): string[] {
  if (!isTrustedSender(event)) return [];
  const parsed = dropReportSchema.safeParse(payload);
  return parsed.success ? grants.addDropped(parsed.data) : [];
}

interface IpcMainOnLike {
  on(channel: string, listener: (event: IpcMainEvent, payload: unknown) => void): unknown;
}

export function registerDropReports(
  ipcMain: IpcMainOnLike,
  grants: { addDropped(paths: readonly string[]): string[] },
): void {
  ipcMain.on(
    DROP_REPORT_CHANNEL,
    (event, payload) => void acceptDropReport(event, payload, grants),
  );
}
