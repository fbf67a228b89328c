// The preload: exposes `window.retrace` (see api.ts) to the sandboxed, context-isolated page.
// Bundled to one CommonJS file, because a sandboxed preload cannot load modules.
import { contextBridge, ipcRenderer, webUtils } from 'electron';
import { createApi } from './api.js';

contextBridge.exposeInMainWorld(
  'retrace',
  createApi(ipcRenderer, (file) => webUtils.getPathForFile(file)),
);
