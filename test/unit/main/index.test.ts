// Main's wiring with Electron mocked: the security switches must actually be applied by index.ts,
// not only exist in the modules it imports.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { invokeChannels } from '../../../electron/contract/channels.js';

const userData = mkdtempSync(path.join(tmpdir(), 'retrace-main-'));

const m = vi.hoisted(() => {
  const webContents = {
    on: vi.fn(),
    setWindowOpenHandler: vi.fn(),
    send: vi.fn(),
  };
  const windows: { options: unknown }[] = [];
  class BrowserWindow {
    webContents = webContents;
    constructor(public options: unknown) {
      windows.push(this);
    }
    static getAllWindows = () => windows;
    loadURL = vi.fn(async () => undefined);
    once = vi.fn();
    on = vi.fn();
    maximize = vi.fn();
    show = vi.fn();
    getNormalBounds = () => ({ x: 0, y: 0, width: 1200, height: 800 });
    isMaximized = () => false;
  }
  const child = { on: vi.fn(), postMessage: vi.fn(), kill: vi.fn() };
  let ready: () => void = () => undefined;
  const readyPromise = new Promise<void>((r) => {
    ready = r;
  });
  return {
    windows,
    webContents,
    BrowserWindow,
    child,
    ready: () => ready(),
    whenReady: readyPromise,
    protocol: { registerSchemesAsPrivileged: vi.fn(), handle: vi.fn() },
    ipcMain: { handle: vi.fn(), on: vi.fn() },
    permission: vi.fn(),
    permissionCheck: vi.fn(),
    openExternal: vi.fn(),
    fork: vi.fn(() => child),
    enableSandbox: vi.fn(),
    appOn: vi.fn(),
  };
});

vi.mock('electron', () => ({
  app: {
    getPath: (name: string) => path.join(userData, name),
    whenReady: () => m.whenReady,
    enableSandbox: m.enableSandbox,
    on: m.appOn,
    isPackaged: false,
    getVersion: () => '0.0.0',
    quit: vi.fn(),
  },
  BrowserWindow: m.BrowserWindow,
  dialog: {},
  ipcMain: m.ipcMain,
  Menu: { setApplicationMenu: vi.fn(), buildFromTemplate: vi.fn((t: unknown) => t) },
  protocol: m.protocol,
  session: {
    defaultSession: {
      setPermissionRequestHandler: m.permission,
      setPermissionCheckHandler: m.permissionCheck,
    },
  },
  shell: { openExternal: m.openExternal },
  utilityProcess: { fork: m.fork },
}));

describe('main wiring (electron mocked)', async () => {
  await import('../../../electron/main/index.js');
  m.ready();
  await m.whenReady;
  await new Promise((r) => setTimeout(r, 10));

  it('registers retrace:// as a privileged scheme before ready and enables the sandbox', () => {
    expect(m.protocol.registerSchemesAsPrivileged).toHaveBeenCalledWith([
      expect.objectContaining({ scheme: 'retrace' }),
    ]);
    expect(m.enableSandbox).toHaveBeenCalled();
  });
  it('handles retrace:// and refuses file://', async () => {
    const schemes = m.protocol.handle.mock.calls.map((c) => c[0]);
    expect(schemes).toEqual(expect.arrayContaining(['retrace', 'file']));
    const file = m.protocol.handle.mock.calls.find((c) => c[0] === 'file')?.[1] as (
      r: Request,
    ) => Response;
    expect(file(new Request('file:///etc/passwd')).status).toBe(403);
  });
  it('opens the window with the secure options and the navigation guards', () => {
    const options = m.windows[0]?.options as { webPreferences: Record<string, unknown> };
    expect(options.webPreferences).toMatchObject({
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
    });
    expect(m.webContents.setWindowOpenHandler).toHaveBeenCalled();
    expect(m.webContents.on.mock.calls.map((c) => c[0])).toEqual(
      expect.arrayContaining(['will-navigate', 'will-redirect', 'will-attach-webview']),
    );
  });
  it('guards every web contents created later, not only the main window', () => {
    const hook = m.appOn.mock.calls.find((c) => c[0] === 'web-contents-created')?.[1] as (
      e: unknown,
      wc: unknown,
    ) => void;
    const contents = { on: vi.fn(), setWindowOpenHandler: vi.fn() };
    hook({}, contents);
    expect(contents.setWindowOpenHandler).toHaveBeenCalled();
    expect(contents.on.mock.calls.map((c) => c[0])).toContain('will-navigate');
  });
  it('denies permission requests', () => {
    const handler = m.permission.mock.calls[0]?.[0] as (
      wc: unknown,
      p: string,
      cb: (ok: boolean) => void,
    ) => void;
    const cb = vi.fn();
    handler({}, 'media', cb);
    expect(cb).toHaveBeenCalledWith(false);
  });
  it('denies permission checks too (security finding 9)', () => {
    const check = m.permissionCheck.mock.calls[0]?.[0] as (wc: unknown, p: string) => boolean;
    expect(check).toBeTypeOf('function');
    expect(check({}, 'clipboard-read')).toBe(false);
    expect(check({}, 'media')).toBe(false);
  });
  it('opens no external URL, from window.open or navigation (security finding 6)', () => {
    const open = m.webContents.setWindowOpenHandler.mock.calls[0]?.[0] as (d: { url: string }) => {
      action: string;
    };
    expect(open({ url: 'https://evil.example/' })).toEqual({ action: 'deny' });
    const navigate = m.webContents.on.mock.calls.find((c) => c[0] === 'will-navigate')?.[1] as (
      e: { preventDefault(): void },
      url: string,
    ) => void;
    const event = { preventDefault: vi.fn() };
    navigate(event, 'https://evil.example/');
    expect(event.preventDefault).toHaveBeenCalled();
    expect(m.openExternal).not.toHaveBeenCalled();
  });
  it('takes drop reports from the preload on their own channel', () => {
    expect(m.ipcMain.on.mock.calls.map((c) => c[0])).toEqual(['grants:dropped']);
  });
  it('routes every contract channel through the validating dispatcher', async () => {
    const channels = m.ipcMain.handle.mock.calls.map((c) => c[0]);
    expect(channels.sort()).toEqual(Object.keys(invokeChannels).sort());
    const listener = m.ipcMain.handle.mock.calls.find((c) => c[0] === 'settings:get')?.[1] as (
      e: unknown,
      p: unknown,
    ) => Promise<unknown>;
    const evil = { senderFrame: { url: 'https://evil.example/', parent: null } };
    expect(await listener(evil, {})).toMatchObject({ ok: false });
    const own = { senderFrame: { url: 'retrace://app/index.html', parent: null } };
    expect(await listener(own, {})).toMatchObject({ ok: true, reply: { provider: 'auto' } });
  });
  it('runs the engine in a utilityProcess', () => {
    expect(m.fork).toHaveBeenCalledWith(
      expect.stringMatching(/engine[\\/]host[\\/]utility\.js$/),
      [],
      expect.objectContaining({ serviceName: 'Retrace engine' }),
    );
    expect(m.child.postMessage).toHaveBeenCalledWith(expect.objectContaining({ type: 'init' }));
  });
});
