// Stands in for the preload in the browser tests: the real `createApi` from the preload, with
// its ipc carried by Playwright bindings to the Node bridge instead of Electron's ipcRenderer.
// Built to an IIFE and injected before the page's own scripts.
import {
  createApi,
  installDropReporter,
  type DropTarget,
  type IpcRendererLike,
} from '../../electron/preload/api.js';

type Listener = (event: unknown, payload: unknown) => void;

interface BridgeWindow {
  __retraceInvoke(channel: string, payload: unknown): Promise<unknown>;
  __retraceDrop(paths: string[]): Promise<unknown>;
  __retraceEmit?: (channel: string, payload: unknown) => void;
  __retraceDropped?: Record<string, string>;
  retrace?: unknown;
}

const w = globalThis as unknown as BridgeWindow;
const listeners = new Map<string, Set<Listener>>();

const ipc: IpcRendererLike = {
  invoke: (channel, payload) => w.__retraceInvoke(channel, payload),
  on: (channel, listener) => {
    const set = listeners.get(channel) ?? new Set<Listener>();
    set.add(listener);
    listeners.set(channel, set);
  },
  removeListener: (channel, listener) => {
    listeners.get(channel)?.delete(listener);
  },
};

w.__retraceEmit = (channel, payload) => {
  for (const l of listeners.get(channel) ?? []) l({}, payload);
};

// A dropped file's path: the test registers name → path, as Electron's webUtils would know it.
const pathForFile = (file: File) => w.__retraceDropped?.[file.name] ?? '';
w.retrace = createApi(ipc, pathForFile);
// The preload's drop reporter, as in the app, reporting to the bridge instead of main. The
// test's drops are synthetic (dispatchEvent), so this stand-in cannot ask for trusted events;
// the app's preload does (test/unit/main/security.test.ts).
installDropReporter(
  globalThis as unknown as DropTarget,
  pathForFile,
  (paths) => void w.__retraceDrop(paths),
  { trustedOnly: false },
);
