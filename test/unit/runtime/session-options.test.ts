// The options each provider's session is opened with (runtime/session.ts), checked against a
// mocked onnxruntime: no machine here has a CUDA provider, so what Retrace asks of CUDA for
// reproducible outputs is verified by what it passes, and the fallback by a failing mock.
import { beforeEach, describe, expect, it, vi } from 'vitest';

const created: { file: string; options: Record<string, unknown> }[] = [];
let failing = new Set<string>();

vi.mock('onnxruntime-node', () => {
  const fakeSession = {
    inputMetadata: [{ name: 'sample', isTensor: true, type: 'float16', shape: [1, 4, 8, 8] }],
    outputMetadata: [{ name: 'out_sample', isTensor: true, type: 'float16', shape: [1, 4, 8, 8] }],
    release: async () => {},
  };
  const api = {
    env: { versions: { common: '9.9.9', node: '9.9.9' }, logLevel: 'warning' },
    listSupportedBackends: () => [
      { name: 'cpu', bundled: true },
      { name: 'cuda', bundled: false },
    ],
    InferenceSession: {
      create: async (file: string, options: Record<string, unknown>) => {
        created.push({ file, options });
        const eps = options.executionProviders as (string | { name: string })[];
        const name = typeof eps[0] === 'string' ? eps[0] : (eps[0]?.name ?? '');
        if (failing.has(name)) throw new Error(`${name} provider is not available\nstack…`);
        return fakeSession;
      },
    },
    Tensor: class {},
  };
  return { default: api, ...api };
});

const { NetworkSession, sessionOptionsFor } =
  await import('../../../electron/engine/runtime/session.js');

beforeEach(() => {
  created.length = 0;
  failing = new Set();
});

describe('session options per provider', () => {
  it('CUDA: device 0 and deterministic compute requested; the precision read off the graph', async () => {
    const s = await NetworkSession.open('unet.onnx', { provider: 'cuda', threads: 2 });
    expect(s.provider.used).toBe('cuda');
    expect(created).toHaveLength(1);
    expect(created[0]?.options).toEqual({
      executionProviders: [{ name: 'cuda', deviceId: 0 }],
      graphOptimizationLevel: 'all',
      logSeverityLevel: 4,
      extra: { session: { use_deterministic_compute: '1' } },
      intraOpNumThreads: 2,
      interOpNumThreads: 1,
    });
    expect(s.precision).toBe('fp16');
  });

  it('a provider that fails to open falls back to CPU with the reason kept; CPU keeps its plain options', async () => {
    failing.add('cuda');
    const s = await NetworkSession.open('unet.onnx', { provider: 'cuda' });
    expect(s.provider).toEqual({
      used: 'cpu',
      attempts: [
        { provider: 'cuda', error: 'cuda provider is not available' },
        { provider: 'cpu' },
      ],
      passedOver: [],
    });
    expect(created.map((c) => c.options.executionProviders)).toEqual([
      [{ name: 'cuda', deviceId: 0 }],
      ['cpu'],
    ]);
    expect(created[1]?.options.extra).toBeUndefined();
  });

  it('WebGPU also asks for deterministic kernels', () => {
    expect(sessionOptionsFor('webgpu').extra).toEqual({
      session: { use_deterministic_compute: '1' },
    });
    expect(sessionOptionsFor('cpu').extra).toBeUndefined();
  });
});
