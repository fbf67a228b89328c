// The engine's process, seen from main: starts the engine host in a utilityProcess (its ONNX
// calls block their own thread, never the window's), numbers requests and matches replies,
// forwards job events, and when the process dies — a native crash, out of memory — fails the
// jobs it was running with a message, answers the pending requests with an error, and starts a
// fresh one. `fork` is injected so this logic is tested without Electron.
import type { HostInit, HostOutgoing } from '../engine/host/protocol.js';

export interface ChildLike {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (message: unknown) => void): void;
  on(event: 'exit', listener: (code: number) => void): void;
  kill(): boolean;
}

export type ForkChild = () => ChildLike;

export interface JobEventPayload {
  type: string;
  jobId: string;
  [key: string]: unknown;
}

interface Pending {
  resolve: (reply: unknown) => void;
  reject: (error: Error) => void;
  channel: string;
}

/** Why a process ended, in words a user can act on. */
export function exitReason(code: number): string {
  // V8 aborts with SIGABRT/SIGTRAP on heap exhaustion; Windows reports 0xE0000008 or 0xC0000017.
  const oom = code === 134 || code === 133 || code === -536870904 || code === 3221225495;
  if (oom) return `the engine ran out of memory (exit code ${code})`;
  // SIGKILL: on Linux and macOS this is what the system's out-of-memory killer sends.
  if (code === 137)
    return `the engine was killed (exit code 137, usually the system ran out of memory)`;
  return `the engine stopped unexpectedly (exit code ${code})`;
}

export class EngineProcess {
  private child: ChildLike | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly active = new Set<string>();
  private stopping = false;
  private restarts: number[] = [];

  constructor(
    private readonly fork: ForkChild,
    private init: HostInit,
    private readonly onJobEvent: (event: JobEventPayload) => void,
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  start(): void {
    const child = this.fork();
    this.child = child;
    child.on('message', (m) => this.receive(m as HostOutgoing));
    child.on('exit', (code) => this.exited(child, code));
    child.postMessage(this.init);
  }

  /** Settings that must survive a restart (provider, threads, output folder) go into init too. */
  updateInit(patch: Partial<HostInit>): void {
    this.init = { ...this.init, ...patch };
  }

  request(channel: string, request: unknown): Promise<unknown> {
    if (!this.child) return Promise.reject(new Error('the engine is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, channel });
      this.child?.postMessage({ type: 'request', id, channel, request });
    });
  }

  stop(): void {
    this.stopping = true;
    this.child?.kill();
  }

  private receive(m: HostOutgoing): void {
    if (m.type === 'reply') {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.reply);
      else p.reject(new Error(m.error));
      return;
    }
    if (m.type === 'event') {
      const e = m.payload as JobEventPayload;
      if (e.type === 'queued' || e.type === 'progress') this.active.add(e.jobId);
      else if (e.type === 'done' || e.type === 'failed' || e.type === 'cancelled')
        this.active.delete(e.jobId);
      this.onJobEvent(e);
    }
  }

  private exited(child: ChildLike, code: number): void {
    if (child !== this.child) return;
    this.child = undefined;
    if (this.stopping) return;
    const reason = exitReason(code);
    this.log(`engine process: ${reason}; restarting`);
    for (const jobId of this.active) {
      this.onJobEvent({
        type: 'failed',
        jobId,
        error: `${reason}; the engine has been restarted, please try again`,
      });
    }
    this.active.clear();
    for (const [id, p] of this.pending) {
      p.reject(new Error(`${p.channel}: ${reason}`));
      this.pending.delete(id);
    }
    // A process that dies at once, again and again, is not restarted forever.
    const now = Date.now();
    this.restarts = [...this.restarts.filter((t) => now - t < 60_000), now];
    if (this.restarts.length > 5) {
      this.log('engine process: crashed 5 times in a minute; not restarting');
      return;
    }
    this.start();
  }
}
