// What WebGPU would run on, on Linux, found without starting it. onnxruntime-node's WebGPU
// provider runs on Dawn over Vulkan; started on a machine whose only Vulkan adapter is a software
// rasteriser (Mesa's llvmpipe/lavapipe, SwiftShader) it "works" on the same CPU cores, ten times
// slower than the CPU provider, and with a Vulkan loader but no driver Dawn prints native
// warnings before it fails. Both are decided here from files alone: the loader library, the
// Vulkan drivers' manifests (ICD JSON files, found where the Vulkan loader looks for them), and
// the GPU device nodes a hardware driver needs.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface VulkanDriver {
  /** The ICD manifest. */
  manifest: string;
  /** Its library_path, as written. */
  library: string;
  /** A CPU rasteriser (llvmpipe/lavapipe, SwiftShader), not a GPU. */
  software: boolean;
}

export interface VulkanEnvironment {
  /** Where libvulkan.so.1 was found, if it was. */
  loader?: string;
  drivers: VulkanDriver[];
  /** GPU device nodes present (/dev/dri/renderD*, /dev/nvidia0, /dev/dxg). */
  gpuDevices: string[];
}

/** Library names of Vulkan drivers that rasterise on the CPU. */
const SOFTWARE_DRIVER = /(^|[/\\])(libvulkan_lvp|libvk_swiftshader|libvulkan_swiftshader)[^/\\]*$/i;

function splitList(value: string | undefined): string[] {
  return (value ?? '').split(':').filter((p) => p.length > 0);
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/** libvulkan.so.1 in the directories the dynamic linker searches first, then the usual ones. */
function findLoader(env: NodeJS.ProcessEnv): string | undefined {
  const dirs = [
    ...splitList(env.LD_LIBRARY_PATH),
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    '/lib/x86_64-linux-gnu',
    '/lib/aarch64-linux-gnu',
  ];
  return dirs.map((d) => path.join(d, 'libvulkan.so.1')).find((f) => existsSync(f));
}

/** ICD manifests where the Vulkan loader looks: VK_DRIVER_FILES / VK_ICD_FILENAMES, else the XDG dirs. */
function driverManifests(env: NodeJS.ProcessEnv): string[] {
  const explicit = splitList(env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES);
  const expand = (entries: string[]) =>
    entries.flatMap((p) =>
      p.endsWith('.json') ? [p] : listDir(p).filter((f) => f.endsWith('.json')),
    );
  if (explicit.length > 0) return expand(explicit).filter((f) => existsSync(f));
  const configDirs = splitList(env.XDG_CONFIG_DIRS ?? '/etc/xdg');
  const dataHome = env.XDG_DATA_HOME ?? path.join(os.homedir(), '.local', 'share');
  const dataDirs = splitList(env.XDG_DATA_DIRS ?? '/usr/local/share:/usr/share');
  const dirs = [
    ...configDirs.map((d) => path.join(d, 'vulkan', 'icd.d')),
    '/etc/vulkan/icd.d',
    path.join(dataHome, 'vulkan', 'icd.d'),
    ...dataDirs.map((d) => path.join(d, 'vulkan', 'icd.d')),
    ...splitList(env.VK_ADD_DRIVER_FILES),
  ];
  return [...new Set(expand(dirs))];
}

function readDriver(manifest: string): VulkanDriver | undefined {
  try {
    const json = JSON.parse(readFileSync(manifest, 'utf8')) as { ICD?: { library_path?: unknown } };
    const library = json.ICD?.library_path;
    if (typeof library !== 'string') return undefined;
    return { manifest, library, software: SOFTWARE_DRIVER.test(library) };
  } catch {
    return undefined;
  }
}

function gpuDeviceNodes(): string[] {
  const dri = listDir('/dev/dri').filter((f) => /renderD\d+$/.test(f));
  const other = ['/dev/nvidia0', '/dev/dxg'].filter((f) => existsSync(f));
  return [...dri, ...other];
}

export function vulkanEnvironment(env: NodeJS.ProcessEnv = process.env): VulkanEnvironment {
  const loader = findLoader(env);
  const drivers = driverManifests(env)
    .map(readDriver)
    .filter((d): d is VulkanDriver => d !== undefined);
  return { ...(loader ? { loader } : {}), drivers, gpuDevices: gpuDeviceNodes() };
}

/**
 * Why WebGPU should not be tried here, or undefined when a hardware adapter may be there.
 * `definitive` reasons (no loader, no driver) mean Dawn cannot start at all, so even an explicit
 * request is not sent to it (it would only print native warnings and fail); a software-only
 * adapter is passed over by `auto` but used when asked for by name.
 */
export function webgpuVerdict(
  v: VulkanEnvironment,
): { reason: string; definitive: boolean } | undefined {
  if (!v.loader)
    return { reason: 'no Vulkan loader (libvulkan.so.1) on this machine', definitive: true };
  if (v.drivers.length === 0) {
    return {
      reason: 'a Vulkan loader but no Vulkan driver (no ICD manifest in the vulkan/icd.d folders)',
      definitive: true,
    };
  }
  const hardware = v.drivers.filter((d) => !d.software);
  const software = v.drivers.filter((d) => d.software).map((d) => path.basename(d.manifest));
  if (hardware.length === 0) {
    return {
      reason: `the only Vulkan driver is a software rasteriser (${software.join(', ')}): it runs on the CPU cores, slower than the CPU provider`,
      definitive: false,
    };
  }
  if (v.gpuDevices.length === 0) {
    return {
      reason: `no GPU device (/dev/dri/renderD*, /dev/nvidia0): the hardware Vulkan drivers installed (${hardware.map((d) => path.basename(d.manifest)).join(', ')}) have nothing to drive, so WebGPU would fall to a software rasteriser${software.length ? ` (${software.join(', ')})` : ''}, slower than the CPU provider`,
      definitive: software.length === 0,
    };
  }
  return undefined;
}
