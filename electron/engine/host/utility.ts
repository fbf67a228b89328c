// Entry point of the engine host process. In the app it is an Electron utilityProcess (messages
// through `process.parentPort`, no electron import needed); in the e2e bridge and tests it is a
// plain `child_process.fork` (messages through `process.send`). Either way the first message is
// `init`; after it, every request gets exactly one reply and job events flow in between.
import path from 'node:path';
import { imageUrlFor } from '../../contract/channels.js';
import { Engine } from '../engine.js';
import { createEngineHost, type EngineHost } from './host.js';
import { answer, isHostRequest, type HostInit, type HostOutgoing } from './protocol.js';

interface ParentPort {
  on(event: 'message', listener: (e: { data: unknown }) => void): void;
  postMessage(message: unknown): void;
}

const parentPort = (process as unknown as { parentPort?: ParentPort }).parentPort;

function send(message: HostOutgoing): void {
  if (parentPort) parentPort.postMessage(message);
  else process.send?.(message);
}

function onMessage(listener: (data: unknown) => void): void {
  if (parentPort) parentPort.on('message', (e) => listener(e.data));
  else process.on('message', listener);
}

let host: EngineHost | undefined;
const early: unknown[] = [];

function start(init: HostInit): void {
  const engine = new Engine({
    userDir: init.userDir,
    ...(init.packDirs ? { packDirs: init.packDirs } : {}),
    runtime: {
      ...(init.provider ? { provider: init.provider } : {}),
      ...(init.threads !== undefined ? { threads: init.threads } : {}),
    },
  });
  const prefix = init.imageUrlPrefix;
  host = createEngineHost(engine, {
    outputRoot: path.resolve(init.outputRoot),
    post: (event) => send({ type: 'event', ...event }),
    imageUrl: prefix ? (file) => `${prefix}${encodeURIComponent(file)}` : imageUrlFor,
    ...(init.outputFormat ? { outputFormat: init.outputFormat } : {}),
  });
  send({ type: 'ready' });
}

function dispatch(data: unknown): void {
  if (!host) {
    const init = data as Partial<HostInit> | null;
    if (init?.type === 'init' && typeof init.userDir === 'string') start(init as HostInit);
    else early.push(data);
    if (host) for (const m of early.splice(0)) dispatch(m);
    return;
  }
  if (isHostRequest(data)) {
    const current = host;
    void answer(current, data).then(send);
  }
}

onMessage(dispatch);

// A parent that goes away takes the engine with it (no orphaned process holding the GPU).
process.on('disconnect', () => {
  void host?.close().finally(() => process.exit(0));
});
