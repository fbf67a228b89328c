// Where WebGPU would run, decided from files (runtime/vulkan.ts), and the provider plan built on
// it (runtime/session.ts): `auto` never picks a software Vulkan adapter, says why, and nothing
// is sent to Dawn where it cannot start (no loader, no driver), so it prints nothing.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { providerPlan } from '../../../electron/engine/runtime/session.js';
import { vulkanEnvironment, webgpuVerdict } from '../../../electron/engine/runtime/vulkan.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'retrace-vulkan-'));
  await mkdir(path.join(dir, 'lib'));
  await writeFile(path.join(dir, 'lib', 'libvulkan.so.1'), '');
  await mkdir(path.join(dir, 'icd.d'));
  const icd = (library: string) =>
    JSON.stringify({
      file_format_version: '1.0.0',
      ICD: { library_path: library, api_version: '1.3.0' },
    });
  await writeFile(path.join(dir, 'icd.d', 'lvp_icd.json'), icd('libvulkan_lvp.so'));
  await writeFile(
    path.join(dir, 'icd.d', 'radeon_icd.json'),
    icd('/usr/lib/x86_64-linux-gnu/libvulkan_radeon.so'),
  );
  await writeFile(path.join(dir, 'icd.d', 'broken.json'), '{ not json');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the Vulkan environment', () => {
  it('finds the loader on LD_LIBRARY_PATH and the drivers named by VK_ICD_FILENAMES (a folder or files)', () => {
    const env = {
      LD_LIBRARY_PATH: path.join(dir, 'lib'),
      VK_ICD_FILENAMES: path.join(dir, 'icd.d'),
    };
    const v = vulkanEnvironment(env);
    expect(v.loader).toBe(path.join(dir, 'lib', 'libvulkan.so.1'));
    expect(v.drivers.map((d) => [path.basename(d.manifest), d.software]).sort()).toEqual([
      ['lvp_icd.json', true],
      ['radeon_icd.json', false],
    ]);
    const one = vulkanEnvironment({
      ...env,
      VK_ICD_FILENAMES: path.join(dir, 'icd.d', 'lvp_icd.json'),
    });
    expect(one.drivers.map((d) => d.library)).toEqual(['libvulkan_lvp.so']);
  });

  it('passes WebGPU over with a reason: no loader, no driver (definitive), software only, no GPU device', () => {
    const lvp = { manifest: '/x/lvp_icd.json', library: 'libvulkan_lvp.so', software: true };
    const radeon = {
      manifest: '/x/radeon_icd.json',
      library: 'libvulkan_radeon.so',
      software: false,
    };
    expect(webgpuVerdict({ drivers: [lvp], gpuDevices: [] })).toEqual({
      reason: 'no Vulkan loader (libvulkan.so.1) on this machine',
      definitive: true,
    });
    expect(
      webgpuVerdict({ loader: '/l', drivers: [], gpuDevices: ['/dev/dri/renderD128'] })?.definitive,
    ).toBe(true);
    const soft = webgpuVerdict({
      loader: '/l',
      drivers: [lvp],
      gpuDevices: ['/dev/dri/renderD128'],
    });
    expect(soft?.definitive).toBe(false);
    expect(soft?.reason).toMatch(/software rasteriser \(lvp_icd\.json\)/);
    const noDevice = webgpuVerdict({ loader: '/l', drivers: [lvp, radeon], gpuDevices: [] });
    expect(noDevice?.definitive).toBe(false);
    expect(noDevice?.reason).toMatch(/no GPU device.*radeon_icd\.json.*lvp_icd\.json/);
    expect(webgpuVerdict({ loader: '/l', drivers: [radeon], gpuDevices: [] })?.definitive).toBe(
      true,
    );
    expect(
      webgpuVerdict({ loader: '/l', drivers: [lvp, radeon], gpuDevices: ['/dev/dri/renderD128'] }),
    ).toBeUndefined();
  });
});

describe('the provider plan', () => {
  const backends = ['cpu', 'webgpu', 'cuda'];
  const software = () => ({ reason: 'only llvmpipe', definitive: false });
  const noDriver = () => ({ reason: 'no driver', definitive: true });
  const hardware = () => undefined;

  it('auto passes a software WebGPU adapter over, with the reason, and keeps the rest in order', () => {
    const plan = providerPlan('auto', { backends, webgpu: software });
    if (process.platform === 'linux') {
      expect(plan.candidates).toEqual(['cuda', 'cpu']);
      expect(plan.passedOver).toEqual([{ provider: 'webgpu', reason: 'only llvmpipe' }]);
      expect(providerPlan('auto', { backends, webgpu: hardware }).candidates).toEqual([
        'cuda',
        'webgpu',
        'cpu',
      ]);
      expect(providerPlan('auto', { backends: ['cpu'], webgpu: hardware }).passedOver).toEqual([
        { provider: 'cuda', reason: 'not in this build of onnxruntime-node' },
        { provider: 'webgpu', reason: 'not in this build of onnxruntime-node' },
      ]);
    }
    expect(plan.candidates.at(-1)).toBe('cpu');
  });

  it('WebGPU by name runs on a software adapter, but is not started where it cannot start', () => {
    expect(providerPlan('webgpu', { backends, webgpu: software }).candidates).toEqual([
      'webgpu',
      'cpu',
    ]);
    expect(providerPlan('webgpu', { backends, webgpu: noDriver })).toEqual({
      candidates: ['cpu'],
      passedOver: [{ provider: 'webgpu', reason: 'no driver' }],
    });
    expect(providerPlan('cpu', { backends, webgpu: software })).toEqual({
      candidates: ['cpu'],
      passedOver: [],
    });
  });
});
