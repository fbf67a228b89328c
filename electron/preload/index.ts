// The preload: exposes `window.retrace` (see api.ts) to the sandboxed, context-isolated page,
// and reports files the user drops on the window to main (the only way a drop grants a path).
// Bundled to one CommonJS file, because a sandboxed preload cannot load modules.
import { contextBridge, ipcRenderer, webUtils } from 'electron';
import { DROP_REPORT_CHANNEL } from '../contract/channels.js';
import { createApi, installDropReporter, type DropTarget } from './api.js';

const pathForFile = (file: File) => webUtils.getPathForFile(file);

contextBridge.exposeInMainWorld('retrace', createApi(ipcRenderer, pathForFile));

installDropReporter(globalThis as unknown as DropTarget, pathForFile, (paths) =>
  ipcRenderer.send(DROP_REPORT_CHANNEL, paths),
);
