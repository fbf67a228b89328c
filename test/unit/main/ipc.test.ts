import { describe, expect, it, vi } from 'vitest';
import { invokeChannels } from '../../../electron/contract/channels.js';
import {
  dispatch,
  isTrustedSender,
  registerIpc,
  type Handlers,
} from '../../../electron/main/ipc.js';

const appFrame = { senderFrame: { url: 'retrace://app/index.html', parent: null } };

function handlers(): Handlers {
  const h: Record<string, unknown> = {};
  for (const c of Object.keys(invokeChannels)) h[c] = vi.fn(async () => ({ from: c }));
  return h as Handlers;
}

describe('ipc sender validation', () => {
  it('trusts only the app page in the top-level frame', () => {
    expect(isTrustedSender(appFrame)).toBe(true);
    expect(isTrustedSender({ senderFrame: null })).toBe(false);
    expect(isTrustedSender({ senderFrame: { url: 'https://evil.example/', parent: null } })).toBe(
      false,
    );
    expect(isTrustedSender({ senderFrame: { url: 'retrace://app/index.html', parent: {} } })).toBe(
      false,
    );
    expect(isTrustedSender({ senderFrame: { url: 'file:///app/index.html', parent: null } })).toBe(
      false,
    );
  });
  it('refuses a request from another frame without calling the handler', async () => {
    const h = handlers();
    const r = await dispatch(
      'packs:list',
      { senderFrame: { url: 'https://evil.example/', parent: null } },
      {},
      h,
    );
    expect(r).toEqual({ ok: false, error: expect.stringContaining('refused') });
    expect(h['packs:list']).not.toHaveBeenCalled();
  });
});

describe('ipc payload validation', () => {
  it('refuses a bad payload naming the field, without calling the handler', async () => {
    const h = handlers();
    const r = await dispatch(
      'jobs:start',
      appFrame,
      { kind: 'generate', params: { model: 'm', prompt: 'p', steps: 0 } },
      h,
    );
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/jobs:start: params\.steps/);
    expect(h['jobs:start']).not.toHaveBeenCalled();
  });
  it('refuses unknown fields (strict schemas)', async () => {
    const r = await dispatch('jobs:cancel', appFrame, { jobId: 'job-1', extra: 1 }, handlers());
    expect(r.ok).toBe(false);
  });
  it('passes the parsed payload (defaults filled) and wraps the reply', async () => {
    const h = handlers();
    const r = await dispatch(
      'jobs:start',
      appFrame,
      { kind: 'generate', params: { model: 'm', prompt: 'p' } },
      h,
    );
    expect(r).toEqual({ ok: true, reply: { from: 'jobs:start' } });
    expect(h['jobs:start']).toHaveBeenCalledWith(
      expect.objectContaining({ params: expect.objectContaining({ count: 1, sampler: 'ddim' }) }),
    );
  });
  it('turns a handler error into a one-line message', async () => {
    const h = handlers();
    h['packs:info'] = () => {
      throw new Error('no pack x');
    };
    expect(await dispatch('packs:info', appFrame, { id: 'x' }, h)).toEqual({
      ok: false,
      error: 'no pack x',
    });
  });
  it('registers exactly the contract channels', () => {
    const handle = vi.fn();
    registerIpc({ handle }, handlers());
    expect(handle.mock.calls.map((c) => c[0]).sort()).toEqual(Object.keys(invokeChannels).sort());
  });
});
