// Electron main: wires the window, the retrace:// protocol, the menu, IPC and the engine process
// together. Everything with logic lives in the modules it imports (each tested with Electron
// mocked); this file only connects them to Electron's objects.
import {
  app,
  BrowserWindow,
  dialog,
  ipcMain,
  Menu,
  protocol,
  session,
  utilityProcess,
  type OpenDialogOptions,
} from 'electron';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventChannels, imageUrlFor } from '../contract/channels.js';
import { EngineProcess, type ChildLike } from './engine-process.js';
import { Grants } from './grants.js';
import { createHandlers, type Dialogs } from './handlers.js';
import { registerDropReports, registerIpc } from './ipc.js';
import { menuTemplate, type MenuCommand } from './menu.js';
import { registerProtocols, SCHEME_PRIVILEGES } from './protocol.js';
import { AppState } from './state.js';
import {
  APP_ENTRY,
  denyAllPermissions,
  installNavigationGuards,
  mainWindowOptions,
} from './windows.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/electron/main → the repository (or app.asar) root.
const appRoot = path.resolve(here, '../../..');
const rendererRoot = path.join(appRoot, 'renderer', 'dist');
const preloadFile = path.join(appRoot, 'dist', 'electron', 'preload', 'index.cjs');
const engineEntry = path.join(appRoot, 'dist', 'electron', 'engine', 'host', 'utility.js');
const bundledPacks = app.isPackaged
  ? path.join(process.resourcesPath, 'packs')
  : path.join(appRoot, 'models', 'packs');

protocol.registerSchemesAsPrivileged([SCHEME_PRIVILEGES]);

const userData = app.getPath('userData');
const state = new AppState(path.join(userData, 'state.json'));
const defaultOutputs = path.join(app.getPath('pictures'), 'Retrace');
const outputRoot = () => state.settings.outputDir ?? defaultOutputs;
const grants = new Grants([outputRoot(), path.join(userData, 'cache')]);

let window: BrowserWindow | undefined;

function sendEvent<C extends keyof typeof eventChannels>(channel: C, payload: unknown): void {
  const parsed = eventChannels[channel].safeParse(payload);
  if (parsed.success) window?.webContents.send(channel, parsed.data);
}

const engine = new EngineProcess(
  () =>
    utilityProcess.fork(engineEntry, [], {
      serviceName: 'Retrace engine',
      stdio: 'inherit',
    }) as unknown as ChildLike,
  {
    type: 'init',
    userDir: path.join(userData, 'packs'),
    outputRoot: outputRoot(),
    packDirs: [bundledPacks],
    provider: state.settings.provider,
    threads: state.settings.threads,
    outputFormat: state.settings.outputFormat,
  },
  (event) => sendEvent('jobs:event', event),
  (line) => console.error(line),
);

async function openDialog(options: OpenDialogOptions): Promise<string | undefined> {
  const result = window
    ? await dialog.showOpenDialog(window, options)
    : await dialog.showOpenDialog(options);
  return result.canceled ? undefined : result.filePaths[0];
}

const dialogs: Dialogs = {
  openImage: () =>
    openDialog({
      properties: ['openFile'],
      filters: [
        { name: 'Images', extensions: ['png', 'jpg', 'jpeg', 'webp', 'tif', 'tiff', 'avif'] },
      ],
    }),
  openFolder: () => openDialog({ properties: ['openDirectory', 'createDirectory'] }),
  openInversion: () =>
    openDialog({
      properties: ['openFile'],
      filters: [{ name: 'Retrace inversion', extensions: ['safetensors'] }],
    }),
  saveFile: async (defaultPath, filters) => {
    const options = { defaultPath, filters };
    const result = window
      ? await dialog.showSaveDialog(window, options)
      : await dialog.showSaveDialog(options);
    return result.canceled ? undefined : result.filePath;
  },
};

function rebuildMenu(): void {
  const send = (command: MenuCommand, file?: string) => {
    if (command === 'open-recent' && file) grants.addPickedFile(file);
    sendEvent('menu:command', file ? { command, path: file } : { command });
  };
  Menu.setApplicationMenu(
    Menu.buildFromTemplate(
      menuTemplate({ send, recent: state.recent, isMac: process.platform === 'darwin' }),
    ),
  );
}

const handlers = createHandlers({
  engine,
  grants,
  state,
  dialogs,
  outputRoot,
  info: () => ({
    version: app.getVersion(),
    platform: process.platform,
    electron: process.versions.electron,
  }),
  onRecent: () => rebuildMenu(),
  onEngineSettings: (patch) => engine.updateInit(patch),
});

function createWindow(): void {
  const bounds = state.bounds;
  const dark = state.settings.theme === 'dark';
  window = new BrowserWindow(
    mainWindowOptions({
      preload: preloadFile,
      dark,
      ...(bounds ? { bounds } : {}),
    }),
  );
  installNavigationGuards(window.webContents);
  if (bounds?.maximized) window.maximize();
  window.once('ready-to-show', () => window?.show());
  const saveBounds = () => {
    if (!window) return;
    state.setBounds({ ...window.getNormalBounds(), maximized: window.isMaximized() });
  };
  window.on('close', saveBounds);
  window.on('closed', () => {
    window = undefined;
  });
  void window.loadURL(APP_ENTRY);
}

app.enableSandbox();

// Every web contents, not only the main window's, gets the same navigation and window.open rules.
app.on('web-contents-created', (_event, contents) => installNavigationGuards(contents));

void app.whenReady().then(() => {
  registerProtocols(protocol, rendererRoot, grants.read);
  // Nothing in the app needs the camera, the microphone, notifications, geolocation, the
  // clipboard or HID: every permission is refused, when asked for and when merely checked.
  denyAllPermissions(session.defaultSession);
  registerIpc(ipcMain, handlers);
  registerDropReports(ipcMain, grants);
  engine.start();
  rebuildMenu();
  createWindow();
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow();
  });
});

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit();
});

app.on('will-quit', () => engine.stop());

// Reference the URL helper so the contract's scheme and the registered one cannot drift apart.
if (!imageUrlFor('/x').startsWith(`${SCHEME_PRIVILEGES.scheme}:`)) {
  throw new Error('retrace:// scheme mismatch between contract and protocol');
}
