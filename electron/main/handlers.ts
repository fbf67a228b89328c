// What main does for each contract channel, with Electron's pieces (dialogs, the engine process)
// injected: the app passes its real dialogs, the e2e bridge passes scripted ones, so the browser
// tests run exactly this code — grants, path checks, settings, recent files — against the real
// engine host.
import { constants as fsConstants } from 'node:fs';
import { copyFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { JobRequest, Settings } from '../contract/channels.js';
import type { Grants } from './grants.js';
import type { Handlers } from './ipc.js';
import { normalisePath } from './protocol.js';
import type { AppState } from './state.js';

export interface Dialogs {
  openImage(): Promise<string | undefined>;
  openFolder(): Promise<string | undefined>;
  openInversion(): Promise<string | undefined>;
  saveFile(
    defaultPath: string,
    filters: { name: string; extensions: string[] }[],
  ): Promise<string | undefined>;
}

export interface EngineSettings {
  provider: Settings['provider'];
  threads: number;
  outputFormat: Settings['outputFormat'];
  outputRoot: string;
}

export interface HandlerDeps {
  engine: { request(channel: string, request: unknown): Promise<unknown> };
  grants: Grants;
  state: AppState;
  dialogs: Dialogs;
  outputRoot: () => string;
  info: () => Record<string, unknown>;
  /** Called when the recent-files list changed (main rebuilds its menu). */
  onRecent?: () => void;
  /** Called after settings changed, with what the engine must know. */
  onEngineSettings?: (patch: EngineSettings) => void;
}

function refuse(what: string, file: string): never {
  throw new Error(`${what}: ${file} was not opened or chosen in this session`);
}

export function createHandlers(d: HandlerDeps): Handlers {
  const { engine, grants, state, dialogs } = d;
  const remember = (file: string) => {
    state.addRecent(file);
    d.onRecent?.();
  };
  return {
    'app:info': () => ({ ...d.info(), outputDir: d.outputRoot() }),
    'app:recent': () => state.recent,
    'packs:list': () => engine.request('packs:list', {}),
    'packs:info': (r) => engine.request('packs:info', r),
    'packs:import': (r) => {
      if (!grants.canRead(r.folder)) refuse('packs:import', r.folder);
      return engine.request('packs:import', r);
    },
    'jobs:start': (r) => {
      const why = grants.refusal(r as JobRequest);
      if (why) throw new Error(`jobs:start: ${why}`);
      if (r.kind === 'restore') grants.addOutputFolder(r.params.outputDir);
      return engine.request('jobs:start', r);
    },
    'jobs:cancel': (r) => engine.request('jobs:cancel', r),
    'jobs:list': () => engine.request('jobs:list', {}),
    'settings:get': () => state.settings,
    'settings:set': async (r) => {
      // The output folder becomes readable and writable at every start, so only a folder the
      // user chose (dialog or drop) may be stored, and it is stored as its real path.
      if (r.outputDir !== undefined) {
        if (!grants.isUserFolder(r.outputDir))
          throw new Error(
            `settings:set: outputDir ${r.outputDir} was not chosen in a folder dialog in this session`,
          );
        r = { ...r, outputDir: normalisePath(r.outputDir) ?? r.outputDir };
      }
      const settings = state.updateSettings(r);
      grants.addOutputFolder(d.outputRoot());
      const patch: EngineSettings = {
        provider: settings.provider,
        threads: settings.threads,
        outputFormat: settings.outputFormat,
        outputRoot: d.outputRoot(),
      };
      d.onEngineSettings?.(patch);
      await engine.request('host:configure', patch);
      return settings;
    },
    'runtime:providers': () => engine.request('runtime:providers', {}),
    'dialog:openImage': async () => {
      const file = await dialogs.openImage();
      if (!file) return null;
      grants.addPickedFile(file);
      const ref = await engine.request('files:openImage', { path: file });
      remember(file);
      return ref;
    },
    'dialog:openFolder': async () => {
      const folder = await dialogs.openFolder();
      if (!folder) return null;
      grants.addPickedFolder(folder);
      return { path: folder };
    },
    'dialog:openInversion': async () => {
      const file = await dialogs.openInversion();
      if (!file) return null;
      grants.addPickedFile(file);
      return { path: file };
    },
    'dialog:saveFile': async (r) => {
      const file = await dialogs.saveFile(
        path.join(d.outputRoot(), path.basename(r.defaultName)),
        r.filters,
      );
      if (!file) return null;
      grants.addSaveTarget(file);
      return { path: file };
    },
    'files:exportImage': (r) => {
      if (!grants.canRead(r.source)) refuse('files:exportImage', r.source);
      if (!grants.takeSaveTarget(r.destination)) refuse('files:exportImage', r.destination);
      return engine.request('files:exportImage', r);
    },
    'files:copy': async (r) => {
      if (!grants.canRead(r.source)) refuse('files:copy', r.source);
      if (!grants.takeSaveTarget(r.destination)) refuse('files:copy', r.destination);
      const temp = `${r.destination}.retrace-partial`;
      try {
        // A stale partial (or a link planted in its place) is removed, never written through.
        await rm(temp, { force: true });
        await copyFile(r.source, temp, fsConstants.COPYFILE_EXCL);
        await rename(temp, r.destination);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      return { path: r.destination };
    },
    'files:openImage': async (r) => {
      // A dropped file (granted when the preload reported the drop) or a recent file chosen in
      // main's menu; a path the page merely names is refused. The engine then refuses anything
      // that is not a readable image.
      if (!grants.canRead(r.path)) refuse('files:openImage', r.path);
      const ref = await engine.request('files:openImage', r);
      remember(r.path);
      return ref;
    },
    // The mask is written by the engine into the output folder (readable and usable as a job's
    // mask from then on); the page supplies pixels, never a path.
    'files:saveMask': (r) => engine.request('files:saveMask', r),
    'files:inversionInfo': (r) => {
      if (!grants.canRead(r.path)) refuse('files:inversionInfo', r.path);
      return engine.request('files:inversionInfo', r);
    },
  };
}
