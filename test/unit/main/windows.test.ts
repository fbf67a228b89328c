import { describe, expect, it, vi } from 'vitest';
import {
  denyAllPermissions,
  installNavigationGuards,
  isAppUrl,
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
  it('denies every window.open and hands nothing to the shell (security finding 6)', () => {
    const { contents, open } = fakeContents();
    installNavigationGuards(contents as never);
    expect(open('https://example.org/')).toEqual({ action: 'deny' });
    expect(open('http://evil.example/phish')).toEqual({ action: 'deny' });
    expect(open('file:///etc/passwd')).toEqual({ action: 'deny' });
    expect(open('javascript:alert(1)')).toEqual({ action: 'deny' });
  });
  it('refuses navigation away from the app page, allows the app page itself', () => {
    const { contents, navigate } = fakeContents();
    installNavigationGuards(contents as never);
    expect(navigate('will-navigate', 'https://evil.example/')).toBe(true);
    expect(navigate('will-navigate', 'file:///etc/passwd')).toBe(true);
    expect(navigate('will-redirect', 'http://x.test/')).toBe(true);
    expect(navigate('will-navigate', 'retrace://image/%2Fetc%2Fpasswd')).toBe(true);
    expect(navigate('will-navigate', 'retrace://app/index.html')).toBe(false);
  });
  it('prevents attaching webviews', () => {
    const { contents, navigate } = fakeContents();
    installNavigationGuards(contents as never);
    expect(navigate('will-attach-webview', '')).toBe(true);
  });
  it('knows the app page by scheme and host, not by prefix', () => {
    expect(isAppUrl('retrace://app/x')).toBe(true);
    expect(isAppUrl('retrace://application/x')).toBe(false);
    expect(isAppUrl('https://app/')).toBe(false);
  });
});

describe('permissions (security finding 9)', () => {
  it('denies every request and every check', () => {
    const session = {
      setPermissionRequestHandler: vi.fn(),
      setPermissionCheckHandler: vi.fn(),
      setDevicePermissionHandler: vi.fn(),
    };
    denyAllPermissions(session);
    const request = session.setPermissionRequestHandler.mock.calls[0]?.[0] as (
      wc: unknown,
      p: string,
      cb: (ok: boolean) => void,
    ) => void;
    const cb = vi.fn();
    request({}, 'media', cb);
    expect(cb).toHaveBeenCalledWith(false);
    const check = session.setPermissionCheckHandler.mock.calls[0]?.[0] as (
      wc: unknown,
      p: string,
    ) => boolean;
    for (const p of ['clipboard-read', 'hid', 'serial', 'usb', 'media', 'notifications'])
      expect(check({}, p)).toBe(false);
    const device = session.setDevicePermissionHandler.mock.calls[0]?.[0] as () => boolean;
    expect(device()).toBe(false);
  });
});
