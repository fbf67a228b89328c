// electron-builder.yml checked offline against electron-builder's own JSON schema, plus the
// packaging rules the app depends on: native add-ons unpacked, packs as resources, and each
// platform keeping only its own runtime binaries.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import yaml from 'js-yaml';
import { minimatch } from 'minimatch';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const schema = JSON.parse(
  readFileSync(path.join(root, 'node_modules/app-builder-lib/scheme.json'), 'utf8'),
) as object;
const config = yaml.load(readFileSync(path.join(root, 'electron-builder.yml'), 'utf8')) as Record<
  string,
  unknown
>;

function validator() {
  const ajv = new Ajv({ strict: false, allErrors: true, allowUnionTypes: true });
  return ajv.compile(schema);
}

/** Whether `file` survives the top-level and the platform's `files` patterns (last match wins). */
function kept(file: string, platform: 'win' | 'mac' | 'linux'): boolean {
  const patterns = [
    ...(config.files as string[]),
    ...(((config[platform] as Record<string, unknown>).files as string[]) ?? []),
  ];
  let keep = false;
  for (const p of patterns) {
    if (p.startsWith('!')) {
      if (minimatch(file, p.slice(1), { dot: true })) keep = false;
    } else if (minimatch(file, p, { dot: true })) keep = true;
  }
  // node_modules are included by electron-builder itself; only exclusions apply to them.
  if (file.startsWith('node_modules/')) {
    keep = true;
    for (const p of patterns) {
      if (p.startsWith('!') && minimatch(file, p.slice(1), { dot: true })) keep = false;
    }
  }
  return keep;
}

describe('electron-builder.yml', () => {
  it("is valid against electron-builder's own schema", () => {
    const validate = validator();
    const ok = validate(config);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  it('the schema check is real: a wrong field type is rejected', () => {
    const validate = validator();
    expect(validate({ ...config, asar: 'yes please' })).toBe(false);
    expect(validate({ ...config, notAnOption: 1 })).toBe(false);
  });

  it('flips every Electron fuse that closes a way around the app', () => {
    // Each fuse of electron-builder's schema is decided here, so a new one cannot slip by.
    const fuseSchema = (
      schema as { definitions: Record<string, { properties: Record<string, unknown> }> }
    ).definitions.FuseOptionsV1;
    const decided = {
      runAsNode: false,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      enableEmbeddedAsarIntegrityValidation: true,
      onlyLoadAppFromAsar: true,
      enableCookieEncryption: true,
      grantFileProtocolExtraPrivileges: false,
      loadBrowserProcessSpecificV8Snapshot: false,
    };
    expect(config.electronFuses).toEqual(decided);
    const known = Object.keys(fuseSchema?.properties ?? {}).filter(
      (k) => k !== 'resetAdHocDarwinSignature',
    );
    expect(Object.keys(decided).sort()).toEqual(known.sort());
    // The schema check covers the fuses: a misspelt or mistyped fuse is rejected.
    const validate = validator();
    expect(validate({ ...config, electronFuses: { ...decided, runAsNode: 'no' } })).toBe(false);
    expect(validate({ ...config, electronFuses: { ...decided, runAsNodee: false } })).toBe(false);
  });

  it('targets NSIS, dmg (arm64), AppImage and deb', () => {
    const targets = (p: string) =>
      ((config[p] as { target: { target: string; arch: string[] }[] }).target ?? []).map(
        (t) => `${t.target}:${t.arch.join(',')}`,
      );
    expect(targets('win')).toEqual(['nsis:x64']);
    expect(targets('mac')).toEqual(['dmg:arm64']);
    expect(targets('linux')).toEqual(['AppImage:x64', 'deb:x64']);
  });

  it('uses asar with onnxruntime-node, sharp and @img unpacked', () => {
    expect(config.asar).toBe(true);
    expect(config.asarUnpack).toEqual(
      expect.arrayContaining([
        'node_modules/onnxruntime-node/**',
        'node_modules/sharp/**',
        'node_modules/@img/**',
      ]),
    );
  });

  it('ships models/packs as extra resources', () => {
    const extra = config.extraResources as { from: string; to: string }[];
    expect(extra).toEqual(
      expect.arrayContaining([expect.objectContaining({ from: 'models/packs', to: 'packs' })]),
    );
  });

  it("prunes other platforms' runtime binaries", () => {
    const ort = (os: string, arch: string) =>
      `node_modules/onnxruntime-node/bin/napi-v6/${os}/${arch}/onnxruntime_binding.node`;
    const img = (name: string) => `node_modules/@img/${name}/lib/libvips-cpp.so`;
    expect(kept(ort('linux', 'x64'), 'linux')).toBe(true);
    expect(kept(ort('win32', 'x64'), 'linux')).toBe(false);
    expect(kept(ort('darwin', 'arm64'), 'linux')).toBe(false);
    expect(kept(img('sharp-linux-x64'), 'linux')).toBe(true);
    expect(kept(img('sharp-win32-x64'), 'linux')).toBe(false);
    expect(kept(ort('darwin', 'arm64'), 'mac')).toBe(true);
    expect(kept(ort('darwin', 'x64'), 'mac')).toBe(false);
    expect(kept(ort('linux', 'x64'), 'mac')).toBe(false);
    expect(kept(img('sharp-darwin-arm64'), 'mac')).toBe(true);
    expect(kept(img('sharp-linux-x64'), 'mac')).toBe(false);
    expect(kept(ort('win32', 'x64'), 'win')).toBe(true);
    expect(kept(ort('linux', 'x64'), 'win')).toBe(false);
    expect(kept(img('sharp-win32-x64'), 'win')).toBe(true);
    expect(kept(img('sharp-darwin-arm64'), 'win')).toBe(false);
  });

  it('packages the built app, not its sources', () => {
    expect(kept('dist/electron/main/index.js', 'linux')).toBe(true);
    expect(kept('dist/electron/preload/index.cjs', 'linux')).toBe(true);
    expect(kept('renderer/dist/index.html', 'linux')).toBe(true);
    expect(kept('electron/main/index.ts', 'linux')).toBe(false);
    expect(kept('dist/electron/main/index.js.map', 'linux')).toBe(false);
  });
});
