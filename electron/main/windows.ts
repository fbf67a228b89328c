// The main window: its options as a pure factory (so tests can pin every security switch) and
// the guards that keep its page where it belongs — no navigation away from the app, no new
// windows, nothing handed to the shell — and the session's permission handlers.
import type { BrowserWindowConstructorOptions, WebContents } from 'electron';

/** The origin the app's own page is served from (see protocol.ts). */
export const APP_ORIGIN = 'retrace://app';
export const APP_ENTRY = `${APP_ORIGIN}/index.html`;

export interface WindowBounds {
  x?: number | undefined;
  y?: number | undefined;
  width: number;
  height: number;
}

export function mainWindowOptions(opts: {
  preload: string;
  bounds?: WindowBounds;
  dark?: boolean;
}): BrowserWindowConstructorOptions {
  const { x, y, width, height } = opts.bounds ?? { width: 1280, height: 840 };
  return {
    ...(x !== undefined && y !== undefined ? { x, y } : {}),
    width,
    height,
    minWidth: 900,
    minHeight: 600,
    show: false,
    title: 'Retrace',
    backgroundColor: opts.dark ? '#16181d' : '#f6f7f9',
    webPreferences: {
      preload: opts.preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      experimentalFeatures: false,
      navigateOnDragDrop: false,
      spellcheck: false,
    },
  };
}

/** True for the app's own page (and nothing that merely starts with the same letters). */
export function isAppUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'retrace:' && u.host === 'app';
  } catch {
    return false;
  }
}

/**
 * The app has no external links of its own, so nothing leaves it: no navigation away from
 * retrace://app, no new windows, no webviews, and no URL handed to the shell (a compromised
 * page could otherwise open any http(s) address in the user's browser, or a crafted one in
 * another app).
 */
export function installNavigationGuards(
  contents: Pick<WebContents, 'on' | 'setWindowOpenHandler'>,
): void {
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  const refuse = (event: { preventDefault(): void }, url: string) => {
    if (!isAppUrl(url)) event.preventDefault();
  };
  contents.on('will-navigate', (event, url) => refuse(event, url));
  contents.on('will-redirect', (event, url) => refuse(event, url));
  contents.on('will-attach-webview', (event) => event.preventDefault());
}

interface SessionLike {
  setPermissionRequestHandler(
    handler: (wc: unknown, permission: string, callback: (granted: boolean) => void) => void,
  ): void;
  setPermissionCheckHandler(handler: (wc: unknown, permission: string) => boolean): void;
  setDevicePermissionHandler?(handler: () => boolean): void;
}

/** Every permission refused: requested (camera, notifications…) and checked (clipboard, HID…). */
export function denyAllPermissions(session: SessionLike): void {
  session.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  session.setPermissionCheckHandler(() => false);
  session.setDevicePermissionHandler?.(() => false);
}
