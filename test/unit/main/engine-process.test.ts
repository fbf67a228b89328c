import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { EngineProcess, exitReason } from '../../../electron/main/engine-process.js';

class FakeChild extends EventEmitter {
  sent: unknown[] = [];
  postMessage(m: unknown) {
    this.sent.push(m);
  }
  kill() {
    this.emit('exit', 0);
    return true;
  }
}

function setup() {
  const children: FakeChild[] = [];
  const events: Record<string, unknown>[] = [];
  const proc = new EngineProcess(
    () => {
      const c = new FakeChild();
      children.push(c);
      return c as never;
    },
    { type: 'init', userDir: '/u', outputRoot: '/o' },
    (e) => events.push(e),
  );
  proc.start();
  return { proc, children, events };
}

describe('engine process', () => {
  it('sends init first, then numbered requests, and matches replies', async () => {
    const { proc, children } = setup();
    const child = children[0] as FakeChild;
    expect(child.sent[0]).toMatchObject({ type: 'init', userDir: '/u' });
    const reply = proc.request('packs:list', {});
    expect(child.sent[1]).toEqual({ type: 'request', id: 1, channel: 'packs:list', request: {} });
    child.emit('message', { type: 'reply', id: 1, ok: true, reply: [{ id: 'p' }] });
    await expect(reply).resolves.toEqual([{ id: 'p' }]);
    const bad = proc.request('packs:info', { id: 'x' });
    child.emit('message', { type: 'reply', id: 2, ok: false, error: 'no pack x' });
    await expect(bad).rejects.toThrow('no pack x');
  });

  it('on a crash fails the running job with a message, rejects pending requests and restarts', async () => {
    const { proc, children, events } = setup();
    const child = children[0] as FakeChild;
    child.emit('message', {
      type: 'event',
      channel: 'jobs:event',
      payload: { type: 'queued', jobId: 'job-a', kind: 'generate' },
    });
    child.emit('message', {
      type: 'event',
      channel: 'jobs:event',
      payload: { type: 'queued', jobId: 'job-b', kind: 'generate' },
    });
    child.emit('message', {
      type: 'event',
      channel: 'jobs:event',
      payload: { type: 'done', jobId: 'job-b', result: {} },
    });
    const pending = proc.request('jobs:list', {});
    child.emit('exit', 134);
    await expect(pending).rejects.toThrow(/out of memory/);
    const failed = events.filter((e) => e.type === 'failed');
    expect(failed).toEqual([
      { type: 'failed', jobId: 'job-a', error: expect.stringMatching(/out of memory.*restarted/) },
    ]);
    expect(children).toHaveLength(2);
    expect((children[1] as FakeChild).sent[0]).toMatchObject({ type: 'init' });
  });

  it('keeps settings across a restart', () => {
    const { proc, children } = setup();
    proc.updateInit({ provider: 'cpu', threads: 2 });
    (children[0] as FakeChild).emit('exit', 1);
    expect((children[1] as FakeChild).sent[0]).toMatchObject({ provider: 'cpu', threads: 2 });
  });

  it('does not restart after a deliberate stop, and gives up on a crash loop', () => {
    const { proc, children } = setup();
    proc.stop();
    expect(children).toHaveLength(1);
    const loop = setup();
    for (let i = 0; i < 8; i++) loop.children.at(-1)?.emit('exit', 1);
    expect(loop.children).toHaveLength(6);
  });

  it('names out-of-memory exits', () => {
    expect(exitReason(134)).toMatch(/out of memory/);
    expect(exitReason(1)).toMatch(/stopped unexpectedly \(exit code 1\)/);
    expect(exitReason(137)).toMatch(/killed .*out of memory/);
  });
});
