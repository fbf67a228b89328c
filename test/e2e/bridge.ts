// The Node bridge that stands in for Electron main + preload in the browser tests. It serves the
// built renderer (with the app's CSP) and the allow-listed images over HTTP, runs main's own
// channel handlers and IPC dispatcher (sender + schema checks included), and drives the real
// engine host in a child process through main's own EngineProcess. Dialogs are scripted.
import { fork, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { imageUrlFor, isInvokeChannel, type JobEvent } from '../../electron/contract/channels.js';
import { EngineProcess, type ChildLike } from '../../electron/main/engine-process.js';
import { Grants } from '../../electron/main/grants.js';
import { createHandlers, type Dialogs } from '../../electron/main/handlers.js';
import { acceptDropReport, dispatch, type Handlers } from '../../electron/main/ipc.js';
import { resolveRequest } from '../../electron/main/protocol.js';
import { AppState } from '../../electron/main/state.js';
import { APP_ENTRY } from '../../electron/main/windows.js';
import { HOST_ENTRY, RENDERER_DIST, SHIM } from './build.js';

type DialogKind = keyof Dialogs;

export interface BridgeOptions {
  /** Scratch folder: user data, outputs, state. */
  dir: string;
  packDirs: string[];
  /** Extra environment for the engine process. */
  hostEnv?: Record<string, string>;
}

export class Bridge {
  readonly events: JobEvent[] = [];
  private readonly answers: Record<DialogKind, (string | undefined)[]> = {
    openImage: [],
    openFolder: [],
    openInversion: [],
    saveFile: [],
  };
  private readonly pages = new Set<Page>();
  private server: Server | undefined;
  private engineProcess: EngineProcess | undefined;
  readonly grants: Grants;
  readonly handlers: Handlers;
  readonly outputRoot: string;
  origin = '';
  /** Lines main would log when the engine process dies. */
  readonly crashes: string[] = [];

  constructor(private readonly options: BridgeOptions) {
    this.outputRoot = path.join(options.dir, 'outputs');
    this.grants = new Grants([this.outputRoot]);
    this.handlers = createHandlers({
      engine: { request: (c, r) => this.engine.request(c, r) },
      grants: this.grants,
      state: new AppState(path.join(options.dir, 'state.json')),
      dialogs: {
        openImage: () => this.takeAnswer('openImage'),
        openFolder: () => this.takeAnswer('openFolder'),
        openInversion: () => this.takeAnswer('openInversion'),
        saveFile: () => this.takeAnswer('saveFile'),
      },
      outputRoot: () => this.outputRoot,
      info: () => ({ version: 'e2e', platform: process.platform }),
      onEngineSettings: (patch) => this.engine.updateInit(patch),
    });
  }

  get engine(): EngineProcess {
    if (!this.engineProcess) throw new Error('bridge not started');
    return this.engineProcess;
  }

  private child: ChildProcess | undefined;

  /** Kills the engine process as a native crash or the OOM killer would. */
  killHost(): void {
    this.child?.kill('SIGKILL');
  }

  private forkHost(): ChildLike {
    const child = fork(HOST_ENTRY, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...this.options.hostEnv },
    });
    this.child = child;
    return {
      postMessage: (m) => void child.send(m as object),
      on: (event: 'message' | 'exit', listener: (arg: never) => void) => {
        if (event === 'exit')
          child.on('exit', (code, signal) =>
            (listener as (c: number) => void)(
              code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0),
            ),
          );
        else child.on('message', listener as (m: unknown) => void);
      },
      kill: () => child.kill(),
    } as ChildLike;
  }

  /** The next answer of a dialog (undefined = the user cancelled it). */
  answer(kind: DialogKind, value: string | undefined): void {
    this.answers[kind].push(value);
  }

  private takeAnswer(kind: DialogKind): Promise<string | undefined> {
    if (this.answers[kind].length === 0) throw new Error(`test did not script the ${kind} dialog`);
    return Promise.resolve(this.answers[kind].shift());
  }

  /** Sends a menu command to the pages, as main does when a menu item is chosen. */
  menu(command: string, file?: string): void {
    this.send('menu:command', file ? { command, path: file } : { command });
  }

  private emit(event: JobEvent): void {
    this.events.push(event);
    this.send('jobs:event', event);
  }

  private send(channel: string, payload: unknown): void {
    for (const page of this.pages) {
      void page
        .evaluate(
          ([c, p]) =>
            (
              globalThis as unknown as { __retraceEmit?: (c: string, p: unknown) => void }
            ).__retraceEmit?.(c as string, p),
          [channel, payload] as const,
        )
        .catch(() => undefined);
    }
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      void this.serve(req.url ?? '/').then(({ status, headers, body }) => {
        res.writeHead(status, headers);
        res.end(body);
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.origin = `http://127.0.0.1:${port}`;
    this.engineProcess = new EngineProcess(
      () => this.forkHost(),
      {
        type: 'init',
        userDir: path.join(this.options.dir, 'user-packs'),
        outputRoot: this.outputRoot,
        packDirs: this.options.packDirs,
        provider: 'cpu',
        // Two cores are shared by everyone on the build machines.
        threads: 1,
        imageUrlPrefix: `${this.origin}/image/`,
      },
      (event) => this.emit(event as JobEvent),
      (line) => this.crashes.push(line),
    );
    this.engineProcess.start();
  }

  private async serve(
    url: string,
  ): Promise<{ status: number; headers: Record<string, string>; body: Buffer | string }> {
    const pathname = url.split('?')[0] ?? '/';
    if (pathname.startsWith('/image/')) {
      // The same allow-list decision as main's retrace://image handler.
      let file: string;
      try {
        file = decodeURIComponent(pathname.slice('/image/'.length));
      } catch {
        return { status: 400, headers: {}, body: 'bad path' };
      }
      const r = resolveRequest(imageUrlFor(file), RENDERER_DIST, this.grants.read);
      if (!r.ok) return { status: r.status, headers: {}, body: r.reason };
      return { status: 200, headers: r.headers, body: await readFile(r.file) };
    }
    const r = resolveRequest(`retrace://app${pathname}`, RENDERER_DIST, this.grants.read);
    if (!r.ok) return { status: r.status, headers: {}, body: r.reason };
    try {
      return { status: 200, headers: r.headers, body: await readFile(r.file) };
    } catch {
      return { status: 404, headers: {}, body: 'not found' };
    }
  }

  /** Wires a page: the preload shim, the invoke binding, and job events. */
  async attach(page: Page): Promise<void> {
    this.pages.add(page);
    await page.exposeBinding(
      '__retraceInvoke',
      async (source, channel: unknown, payload: unknown) => {
        if (!isInvokeChannel(channel))
          return { ok: false, error: `unknown channel ${String(channel)}` };
        // Our own page (top frame, bridge origin) plays the part of retrace://app.
        const own = source.frame === page.mainFrame() && source.frame.url().startsWith(this.origin);
        const senderFrame = {
          url: own ? APP_ENTRY : source.frame.url(),
          parent: source.frame.parentFrame() ? {} : null,
        };
        return dispatch(channel, { senderFrame }, payload, this.handlers);
      },
    );
    // The preload's drop reports, checked and granted by main's own function.
    await page.exposeBinding('__retraceDrop', (source, paths: unknown) => {
      const own = source.frame === page.mainFrame() && source.frame.url().startsWith(this.origin);
      const senderFrame = {
        url: own ? APP_ENTRY : source.frame.url(),
        parent: source.frame.parentFrame() ? {} : null,
      };
      return acceptDropReport({ senderFrame }, paths, this.grants);
    });
    await page.addInitScript({ path: SHIM });
  }

  async close(): Promise<void> {
    this.engineProcess?.stop();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
  }
}
