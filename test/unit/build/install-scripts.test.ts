// Dependency install scripts are approved one by one (package.json `allowScripts`, npm 11): npm
// documents them as blocked unless approved, and two of them are what make the app work on a
// user's machine — Electron's postinstall fetches its binary, onnxruntime-node's fetches the CUDA
// provider on Linux. Every dependency with an install script must be either approved or denied on
// purpose, and an approval covers the version that was reviewed: upgrading such a dependency fails
// here until its script is read again and REVIEWED is updated. (Approvals are by name because this
// project's lockfile records no download URLs, which npm needs to pin an approval to a version.)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

interface LockEntry {
  version?: string;
  hasInstallScript?: boolean;
}

const root = path.resolve('.');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  allowScripts?: Record<string, boolean>;
};
const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, LockEntry>;
};

/** The versions whose install scripts were read, and why each may run. */
const REVIEWED: Record<string, { version: string; why: string }> = {
  electron: {
    version: '40.8.5',
    why: 'downloads the Electron binary (skipped with ELECTRON_SKIP_BINARY_DOWNLOAD=1)',
  },
  'onnxruntime-node': {
    version: '1.30.0',
    why: 'downloads the CUDA execution provider on Linux x64 (skipped with ONNXRUNTIME_NODE_INSTALL=skip)',
  },
};
/**
 * Denied: electron-builder's Squirrel.Windows helper, unused (Windows ships as NSIS); and
 * msgpackr-extract (through bullmq → msgpackr), whose script only compiles the native decoder with
 * node-gyp when no prebuilt @msgpackr-extract/* package fits — msgpackr loads a prebuilt one at
 * run time without it, and falls back to plain JavaScript otherwise.
 */
const DENIED = ['electron-winstaller', 'msgpackr-extract'];

const withScripts = Object.entries(lock.packages)
  .filter(([key, entry]) => key !== '' && entry.hasInstallScript === true)
  .map(([key, entry]) => ({ name: key.replace(/^.*node_modules\//, ''), version: entry.version }));

describe('install scripts (package.json allowScripts)', () => {
  it('the lockfile still lists the packages with install scripts this test knows', () => {
    expect(withScripts.map((p) => p.name).sort()).toEqual(
      [...Object.keys(REVIEWED), ...DENIED].sort(),
    );
  });

  it('every dependency with an install script is approved or denied on purpose', () => {
    const allow = pkg.allowScripts ?? {};
    for (const { name } of withScripts) {
      expect(allow[name], `${name} has an install script but no allowScripts entry`).toBeTypeOf(
        'boolean',
      );
    }
    for (const name of Object.keys(REVIEWED)) expect(allow[name], name).toBe(true);
    for (const name of DENIED) expect(allow[name], name).toBe(false);
    expect(Object.keys(allow).sort()).toEqual([...Object.keys(REVIEWED), ...DENIED].sort());
  });

  it('approved scripts belong to the versions that were reviewed', () => {
    for (const { name, version } of withScripts) {
      const reviewed = REVIEWED[name];
      if (reviewed)
        expect(version, `${name}: review its install script again`).toBe(reviewed.version);
    }
  });
});
