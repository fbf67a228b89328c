// The packaged shape of the app in real Electron (Playwright's _electron): the window, the
// preload surface, and the security switches seen from inside the page. Needs the Electron
// binary, which the build machines cannot download; there the tests say so and skip.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { _electron, type ElectronApplication, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function electronBinary(): string | undefined {
  const dir = path.join(root, 'node_modules', 'electron');
  const pathFile = path.join(dir, 'path.txt');
  if (!existsSync(pathFile)) return undefined;
  const binary = path.join(dir, 'dist', readFileSync(pathFile, 'utf8').trim());
  return existsSync(binary) ? binary : undefined;
}

const binary = electronBinary();
if (!binary) console.log('skipped: Electron binary not installed (ELECTRON_SKIP_BINARY_DOWNLOAD)');

describe.skipIf(!binary)('Retrace in Electron', () => {
  let app: ElectronApplication;
  let page: Page;

  beforeAll(async () => {
    execFileSync('npm', ['run', 'build:app'], { cwd: root, stdio: 'inherit' });
    app = await _electron.launch({
      executablePath: binary ?? '',
      args: [path.join(root, 'dist', 'electron', 'main', 'index.js')],
      cwd: root,
    });
    page = await app.firstWindow();
    await page.getByTestId('nav-edit').waitFor();
  });

  afterAll(async () => {
    await app?.close();
  });

  it('opens the app page from retrace://app', async () => {
    expect(page.url()).toBe('retrace://app/index.html');
    expect(await page.title()).toBe('Retrace');
  });

  it('exposes only the typed API, and no Node', async () => {
    const surface = await page.evaluate(() => ({
      keys: Object.keys((globalThis as unknown as { retrace: object }).retrace).sort(),
      require: typeof (globalThis as unknown as { require?: unknown }).require,
      process: typeof (globalThis as unknown as { process?: unknown }).process,
    }));
    expect(surface).toEqual({
      keys: ['invoke', 'on', 'pathForFile'],
      require: 'undefined',
      process: 'undefined',
    });
  });

  it('refuses file:// and images outside the allow-list', async () => {
    const fileStatus = await page.evaluate(() =>
      fetch('file:///etc/hostname').then(
        (r) => r.status,
        () => -1,
      ),
    );
    expect(fileStatus === -1 || fileStatus === 403).toBe(true);
    const imageStatus = await page.evaluate(() =>
      fetch(`retrace://image/${encodeURIComponent('/etc/hostname.png')}`).then((r) => r.status),
    );
    expect(imageStatus).toBe(403);
  });

  it('does not navigate away or open windows', async () => {
    await page.evaluate(() => {
      (globalThis as unknown as { location: { href: string } }).location.href =
        'https://example.org/';
    });
    await page.waitForTimeout(300);
    expect(page.url()).toBe('retrace://app/index.html');
    await page.evaluate(() =>
      (globalThis as unknown as { open(u: string): unknown }).open('https://example.org/'),
    );
    await page.waitForTimeout(300);
    expect(app.windows()).toHaveLength(1);
  });

  it('answers the contract through the preload', async () => {
    const settings = await page.evaluate(() =>
      (
        globalThis as unknown as { retrace: { invoke(c: string, r: object): Promise<unknown> } }
      ).retrace.invoke('settings:get', {}),
    );
    expect(settings).toMatchObject({ provider: expect.any(String) });
  });
});
