import { describe, expect, it, vi } from 'vitest';
import {
  installNavigationGuards,
  isAppUrl,
  isSafeExternalUrl,
  mainWindowOptions,
} from '../../../electron/main/windows.js';

type Listener = (event: { preventDefault(): void }, url: string) => void;

function fakeContents() {
  const listeners = new Map<string, Listener>();
  let openHandler: ((d: { url: string }) => { action: string }) | undefined;
  const contents = {
    on: (name: string, l: Listener) => {
      listeners.set(name, l);
      return contents;
    },
    setWindowOpenHandler: (h: (d: { url: string }) => { action: string }) => {
      openHandler = h;
    },
  };
  const navigate = (name: string, url: string) => {
    const event = { preventDefault: vi.fn() };
    listeners.get(name)?.(event, url);
    return event.preventDefault.mock.calls.length > 0;
  };
  return { contents, navigate, open: (url: string) => openHandler?.({ url }), listeners };
}

describe('main window options', () => {
  const prefs = mainWindowOptions({ preload: '/app/preload.cjs' }).webPreferences ?? {};
  it('isolates the page: contextIsolation and sandbox on, no Node in any frame', () => {
    expect(prefs.contextIsolation).toBe(true);
    expect(prefs.sandbox).toBe(true);
    expect(prefs.nodeIntegration).toBe(false);
    expect(prefs.nodeIntegrationInSubFrames).toBe(false);
    expect(prefs.nodeIntegrationInWorker).toBe(false);
  });
  it('keeps web security on and webviews off', () => {
    expect(prefs.webSecurity).toBe(true);
    expect(prefs.allowRunningInsecureContent).toBe(false);
    expect(prefs.webviewTag).toBe(false);
    expect(prefs.navigateOnDragDrop).toBe(false);
  });
  it('uses the given preload and restores saved bounds', () => {
    const o = mainWindowOptions({
      preload: '/p.cjs',
      bounds: { x: 10, y: 20, width: 1000, height: 700 },
    });
    expect(o.webPreferences?.preload).toBe('/p.cjs');
    expect([o.x, o.y, o.width, o.height]).toEqual([10, 20, 1000, 700]);
  });
});

describe('navigation guards', () => {
  it('denies every window.open and sends http(s) links to the shell only', () => {
    const { contents, open } = fakeContents();
    const openExternal = vi.fn();
    installNavigationGuards(contents as never, openExternal);
    expect(open('https://example.org/')).toEqual({ action: 'deny' });
    expect(open('file:///etc/passwd')).toEqual({ action: 'deny' });
    expect(open('javascript:alert(1)')).toEqual({ action: 'deny' });
    expect(openExternal.mock.calls).toEqual([['https://example.org/']]);
  });
  it('refuses navigation away from the app page, allows the app page itself', () => {
    const { contents, navigate } = fakeContents();
    const openExternal = vi.fn();
    installNavigationGuards(contents as never, openExternal);
    expect(navigate('will-navigate', 'https://evil.example/')).toBe(true);
    expect(navigate('will-navigate', 'file:///etc/passwd')).toBe(true);
    expect(navigate('will-redirect', 'http://x.test/')).toBe(true);
    expect(navigate('will-navigate', 'retrace://image/%2Fetc%2Fpasswd')).toBe(true);
    expect(navigate('will-navigate', 'retrace://app/index.html')).toBe(false);
    expect(openExternal).toHaveBeenCalledWith('https://evil.example/');
    expect(openExternal).not.toHaveBeenCalledWith('file:///etc/passwd');
  });
  it('prevents attaching webviews', () => {
    const { contents, navigate } = fakeContents();
    installNavigationGuards(contents as never, vi.fn());
    expect(navigate('will-attach-webview', '')).toBe(true);
  });
  it('only http(s) without credentials counts as external', () => {
    expect(isSafeExternalUrl('https://a.b/c')).toBe(true);
    expect(isSafeExternalUrl('http://a.b/')).toBe(true);
    expect(isSafeExternalUrl('https://user:pw@a.b/')).toBe(false);
    expect(isSafeExternalUrl('smb://host/share')).toBe(false);
    expect(isSafeExternalUrl('not a url')).toBe(false);
    expect(isAppUrl('retrace://app/x')).toBe(true);
    expect(isAppUrl('retrace://application/x')).toBe(false);
    expect(isAppUrl('https://app/')).toBe(false);
  });
});
