import { beforeEach, describe, expect, it, vi } from 'vitest';
import { createApi } from '../../../electron/preload/api.js';

function fakeIpc() {
  const listeners = new Map<string, Set<(e: unknown, p: unknown) => void>>();
  return {
    invoke: vi.fn(async (_c: string, _p: unknown): Promise<unknown> => ({ ok: true, reply: 42 })),
    on: (c: string, l: (e: unknown, p: unknown) => void) => {
      if (!listeners.has(c)) listeners.set(c, new Set());
      listeners.get(c)?.add(l);
    },
    removeListener: (c: string, l: (e: unknown, p: unknown) => void) => {
      listeners.get(c)?.delete(l);
    },
    emit: (c: string, p: unknown) => listeners.get(c)?.forEach((l) => l({}, p)),
    count: (c: string) => listeners.get(c)?.size ?? 0,
  };
}

describe('preload surface', () => {
  let ipc: ReturnType<typeof fakeIpc>;
  beforeEach(() => {
    ipc = fakeIpc();
  });
  it('exposes exactly invoke, on and pathForFile — no ipcRenderer, no Node', () => {
    const api = createApi(ipc, () => '/x');
    expect(Object.keys(api).sort()).toEqual(['invoke', 'on', 'pathForFile']);
    expect(JSON.stringify(Object.values(api).map((v) => typeof v))).toBe(
      '["function","function","function"]',
    );
  });
  it('refuses channels outside the contract before they reach ipc', async () => {
    const api = createApi(ipc, () => '/x');
    await expect(api.invoke('shell:exec' as never, {} as never)).rejects.toThrow(/unknown channel/);
    expect(ipc.invoke).not.toHaveBeenCalled();
    expect(() => api.on('anything' as never, () => undefined)).toThrow(/unknown event channel/);
  });
  it('unwraps replies and turns error envelopes into Errors with the message', async () => {
    const api = createApi(ipc, () => '/x');
    await expect(api.invoke('packs:list', {})).resolves.toBe(42);
    ipc.invoke.mockResolvedValueOnce({ ok: false, error: 'packs:info: no pack x' });
    await expect(api.invoke('packs:info', { id: 'x' })).rejects.toThrow('packs:info: no pack x');
  });
  it('delivers only events that match the contract, and unsubscribes', () => {
    const api = createApi(ipc, () => '/x');
    const seen: unknown[] = [];
    const off = api.on('jobs:event', (e) => seen.push(e));
    ipc.emit('jobs:event', { type: 'cancelled', jobId: 'job-1' });
    ipc.emit('jobs:event', { type: 'cancelled', jobId: 'not a job id' });
    expect(seen).toEqual([{ type: 'cancelled', jobId: 'job-1' }]);
    off();
    expect(ipc.count('jobs:event')).toBe(0);
  });
});
