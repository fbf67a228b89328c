// The main window: its options as a pure factory (so tests can pin every security switch) and
// the guards that keep its page where it belongs — no navigation away from the app, no new
// windows, and external http(s) links handed to the user's browser through the shell.
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

/** Only plain web links leave the app, and only to the user's browser. */
export function isSafeExternalUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return (
      (u.protocol === 'https:' || u.protocol === 'http:') && u.username === '' && u.password === ''
    );
  } catch {
    return false;
  }
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

export function installNavigationGuards(
  contents: Pick<WebContents, 'on' | 'setWindowOpenHandler'>,
  openExternal: (url: string) => void,
): void {
  // window.open and target=_blank: never a new Electron window; web links go to the browser.
  contents.setWindowOpenHandler(({ url }) => {
    if (isSafeExternalUrl(url)) openExternal(url);
    return { action: 'deny' };
  });
  const refuse = (event: { preventDefault(): void }, url: string) => {
    if (isAppUrl(url)) return;
    event.preventDefault();
    if (isSafeExternalUrl(url)) openExternal(url);
  };
  contents.on('will-navigate', (event, url) => refuse(event, url));
  contents.on('will-redirect', (event, url) => refuse(event, url));
  contents.on('will-attach-webview', (event) => event.preventDefault());
}
