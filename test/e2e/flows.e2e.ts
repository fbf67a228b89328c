// The app's flows in Debian's Chromium against the built renderer, through the Node bridge to
// the real engine host and real packs. Each flow saves a screenshot under test/e2e/screenshots/.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bridge } from './bridge.js';
import { ROOT, TMP } from './build.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'test', 'e2e', 'screenshots');
const TINY_SD = path.join(ROOT, 'test', 'fixtures', 'tiny-sd');
const work = path.join(TMP, `run-${process.pid}`);

let browser: Browser;
let page: Page;
let bridge: Bridge;
let restorePack: string | undefined;
/** The bundled Shapes model when it is there (nicer pictures), else the tiny SD fixture. */
let textPack = 'tiny-sd';
const pageErrors: string[] = [];

/** A small photo with structure (gradient + blocks), optionally with noise added. */
async function makePhoto(file: string, size: number, noise = 0, seed = 1): Promise<string> {
  const data = Buffer.alloc(size * size * 3);
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = 3 * (y * size + x);
      const block = (Math.floor(x / (size / 4)) + Math.floor(y / (size / 4))) % 2;
      const base = [40 + (180 * x) / size, 60 + (150 * y) / size, block ? 200 : 50];
      for (let c = 0; c < 3; c++) {
        data[i + c] = Math.max(0, Math.min(255, Math.round((base[c] ?? 0) + noise * rand())));
      }
    }
  }
  mkdirSync(path.dirname(file), { recursive: true });
  await sharp(data, { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toFile(file);
  return file;
}

/** A Shapes-world scene: a pale gradient with one red circle, drawn at `width` × `height`. */
async function makeScene(file: string, width = 64, height = 64): Promise<string> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 64 64" preserveAspectRatio="none">
    <defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="#eef2f7"/><stop offset="1" stop-color="#d9e0ea"/></linearGradient></defs>
    <rect width="64" height="64" fill="url(#g)"/><circle cx="30" cy="34" r="13" fill="#d62828"/></svg>`;
  mkdirSync(path.dirname(file), { recursive: true });
  await sharp(Buffer.from(svg)).png().toFile(file);
  return file;
}

async function shot(name: string): Promise<void> {
  await page.locator('main').evaluate((el) => el.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

async function nav(view: string): Promise<void> {
  await page.getByTestId(`nav-${view}`).click();
}

async function rawPixels(file: string): Promise<Buffer> {
  return sharp(file).removeAlpha().raw().toBuffer();
}

beforeAll(async () => {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  mkdirSync(SHOTS, { recursive: true });
  // The engine sees a machine like a GPU-less laptop with Mesa's Vulkan: a loader and only the
  // llvmpipe driver (files alone: `auto` decides from them and never starts WebGPU there).
  const vulkan = path.join(work, 'fake-vulkan');
  mkdirSync(path.join(vulkan, 'icd.d'), { recursive: true });
  writeFileSync(path.join(vulkan, 'libvulkan.so.1'), '');
  writeFileSync(
    path.join(vulkan, 'icd.d', 'lvp_icd.x86_64.json'),
    JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: 'libvulkan_lvp.so' } }),
  );
  bridge = new Bridge({
    dir: work,
    packDirs: [path.join(ROOT, 'models', 'packs')],
    hostEnv: { LD_LIBRARY_PATH: vulkan, VK_ICD_FILENAMES: path.join(vulkan, 'icd.d') },
  });
  await bridge.start();
  // The tiny Stable Diffusion fixture is a diffusers ONNX folder: import it like a user would.
  await bridge.engine.request('packs:import', { folder: TINY_SD });
  const packs = (await bridge.engine.request('packs:list', {})) as {
    id: string;
    task: string;
    ok: boolean;
  }[];
  restorePack = packs.find((p) => p.ok && p.task === 'restoration')?.id;
  if (packs.some((p) => p.ok && p.id === 'shapes-base')) textPack = 'shapes-base';
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(m.text());
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await bridge.attach(page);
  await page.goto(`${bridge.origin}/index.html`);
  await page.getByTestId('nav-edit').waitFor();
});

afterAll(async () => {
  await browser?.close();
  await bridge?.close();
});

describe('Retrace in the browser', () => {
  let exportedInversion = '';
  let roundtripImage = '';

  it('edit a photo, then export the image and the inversion', async () => {
    const photo = await makeScene(path.join(work, 'photos', 'red-circle.png'));
    await nav('edit');
    bridge.answer('openImage', photo);
    await page.getByTestId('open-image').click();
    await page
      .getByRole('region', { name: 'drop a photo here' })
      .getByText('red-circle.png')
      .waitFor();
    await page.getByTestId('edit-model').selectOption(textPack);
    await page.getByTestId('source-prompt').fill('a red circle');
    await page.getByText('Advanced').click();
    await page.getByTestId('adv-steps').fill('20');
    await page.getByTestId('invert').click();
    await page.getByTestId('roundtrip-pixel').waitFor({ timeout: 120_000 });
    const err = await page.getByTestId('roundtrip-pixel').innerText();
    expect(err).toMatch(/pixel max error/);
    const firstAfter = await page.getByTestId('after-image').getAttribute('src');
    roundtripImage = decodeURIComponent(String(firstAfter).split('/image/')[1] ?? '');
    expect(existsSync(roundtripImage)).toBe(true);

    await page.getByTestId('edit-prompt').fill('a blue circle');
    await page.getByTestId('apply-edit').click();
    await expect
      .poll(() => page.getByTestId('after-image').getAttribute('src'), { timeout: 120_000 })
      .not.toBe(firstAfter);
    const edited = await page.getByTestId('after-image').getAttribute('src');
    // Undo goes back to the round trip, redo to the edit.
    await page.getByTestId('undo').click();
    expect(await page.getByTestId('after-image').getAttribute('src')).toBe(firstAfter);
    await page.getByTestId('redo').click();
    expect(await page.getByTestId('after-image').getAttribute('src')).toBe(edited);
    // The image is actually served from the allow-list.
    const status = await page.evaluate(async (u) => (await fetch(String(u))).status, edited);
    expect(status).toBe(200);

    const exportFile = path.join(work, 'exports', 'edited.webp');
    mkdirSync(path.dirname(exportFile), { recursive: true });
    bridge.answer('saveFile', exportFile);
    await page.getByTestId('export-format').selectOption('webp');
    await page.getByTestId('export-image').click();
    await page.getByTestId('edit-message').filter({ hasText: 'Exported' }).waitFor();
    expect((await sharp(exportFile).metadata()).format).toBe('webp');

    exportedInversion = path.join(work, 'exports', 'red-circle.inversion.safetensors');
    bridge.answer('saveFile', exportedInversion);
    await page.getByTestId('export-inversion').click();
    await page.getByTestId('edit-message').filter({ hasText: 'Saved inversion' }).waitFor();
    const header = readFileSync(exportedInversion).subarray(8, 4000).toString('latin1');
    expect(header).toContain('retrace-inversion/1');
    await shot('edit');
  });

  it('paints a mask, shows the automatic mask, applies a full-resolution edit and exports it', async () => {
    // A photo larger than the pack's 64 px working size: the edit must come back at 480 × 320.
    const [W, H] = [480, 320];
    const photo = await makeScene(path.join(work, 'photos', 'wide-circle.png'), W, H);
    await nav('edit');
    bridge.answer('openImage', photo);
    await page.getByTestId('open-image').click();
    await page
      .getByRole('region', { name: 'drop a photo here' })
      .getByText('wide-circle.png')
      .waitFor();
    await page.getByTestId('edit-model').selectOption(textPack);
    await page.getByTestId('source-prompt').fill('a red circle');
    if (!(await page.getByTestId('adv-steps').isVisible()))
      await page.getByText('Advanced').click();
    await page.getByTestId('adv-steps').fill('20');
    await page.getByTestId('invert').click();
    await page.getByTestId('roundtrip-pixel').waitFor({ timeout: 120_000 });
    await page.getByTestId('edit-prompt').fill('a blue circle');

    // Paint: one stroke across the circle; undo and redo include the stroke.
    await page.getByTestId('paint-mask').click();
    const canvas = page.getByTestId('mask-canvas');
    await canvas.waitFor();
    const box = await canvas.boundingBox();
    if (!box) throw new Error('the mask canvas has no box');
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.5);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.45, box.y + box.height * 0.55, { steps: 8 });
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.5, { steps: 8 });
    await page.mouse.up();
    await expect
      .poll(() => page.getByTestId('mask-coverage').innerText())
      .toMatch(/mask: [1-9]\d* %/);
    await page.getByTestId('undo').click();
    await expect.poll(() => page.getByTestId('mask-coverage').innerText()).toMatch(/no mask/);
    await page.getByTestId('redo').click();
    await expect.poll(() => page.getByTestId('mask-coverage').innerText()).toMatch(/mask: [1-9]/);
    await shot('edit-mask');

    // The automatic mask replaces the painted one, shown over the photo for touching up.
    await page.getByTestId('auto-mask').click();
    await page
      .getByTestId('edit-message')
      .filter({ hasText: 'Automatic mask' })
      .waitFor({ timeout: 120_000 });
    await page.getByTestId('mask-canvas').waitFor();
    await shot('edit-automask');
    // Touch it up: one more stroke over the circle, so the edit has somewhere to happen.
    await page.mouse.move(box.x + box.width * 0.35, box.y + box.height * 0.5);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.55, box.y + box.height * 0.6, { steps: 8 });
    await page.mouse.up();
    await expect.poll(() => page.getByTestId('mask-coverage').innerText()).toMatch(/mask: [1-9]/);

    await page.getByTestId('apply-edit').click();
    await page.getByTestId('result-size').waitFor({ timeout: 120_000 });
    await expect
      .poll(() => page.getByTestId('result-size').innerText(), { timeout: 120_000 })
      .toBe(`${W} × ${H} px`);
    await shot('edit-fullres');
    const exportFile = path.join(work, 'exports', 'wide-edited.png');
    bridge.answer('saveFile', exportFile);
    await page.getByTestId('export-format').selectOption('png');
    await page.getByTestId('export-image').click();
    await page.getByTestId('edit-message').filter({ hasText: 'Exported' }).waitFor();
    const meta = await sharp(exportFile).metadata();
    expect([meta.width, meta.height]).toEqual([W, H]);
    // Far from the painted and automatic masks (the photo's corners) the pixels are the photo's.
    const [a, b] = await Promise.all([rawPixels(photo), rawPixels(exportFile)]);
    const corner = (buf: Buffer) => buf.subarray(0, 3 * 8);
    expect(corner(b).equals(corner(a))).toBe(true);
  });

  it('re-import the inversion and replay it (bit for bit with the same prompt)', async () => {
    expect(exportedInversion).not.toBe('');
    bridge.answer('openInversion', exportedInversion);
    await page.getByTestId('import-inversion').click();
    await page.getByTestId('edit-message').filter({ hasText: 'Imported' }).waitFor();
    expect(await page.getByTestId('edit-prompt').inputValue()).toBe('a red circle');
    await page.getByTestId('apply-edit').click();
    await page
      .getByTestId('export-image')
      .and(page.locator(':not([disabled])'))
      .waitFor({ timeout: 120_000 });
    const src = await page.locator('main img').last().getAttribute('src');
    const replayed = decodeURIComponent(String(src).split('/image/')[1] ?? '');
    expect(existsSync(replayed)).toBe(true);
    // Replaying the source prompt from the file gives exactly the round trip of the first flow.
    expect((await rawPixels(replayed)).equals(await rawPixels(roundtripImage))).toBe(true);
    await shot('replay');
  });

  it('generate with and without Time-Shift', async () => {
    await nav('generate');
    await page.getByTestId('gen-model').selectOption(textPack);
    await page.getByTestId('gen-prompt').fill('a yellow triangle left of a blue square');
    await page.getByTestId('gen-steps').fill('10');
    await page.getByTestId('gen-count').fill('1');
    await page.getByTestId('gen-seed').fill('42');
    await page.getByTestId('gen-timeshift').check();
    await page.getByTestId('gen-run').click();
    const cards = page.getByTestId('gen-results').locator('li');
    await expect.poll(() => cards.count(), { timeout: 120_000 }).toBe(1);
    await page.getByTestId('gen-timeshift').uncheck();
    await page.getByTestId('gen-run').click();
    await expect.poll(() => cards.count(), { timeout: 120_000 }).toBe(2);
    const text = await page.getByTestId('gen-results').innerText();
    expect(text).toMatch(/timeShift\s+off/);
    expect(text).toMatch(/timeShift\s+W=80, cutoff=300/);
    const done = bridge.events.filter((e) => e.type === 'done' && Array.isArray(e.result.images));
    const params = done.slice(-2).map((e) => (e.type === 'done' ? e.result.params : undefined)) as {
      timeShift?: unknown;
    }[];
    expect(params[0]?.timeShift).toBeTruthy();
    expect(params[1]?.timeShift ?? null).toBeNull();
    await shot('generate');
    // A result goes to Edit as its source photo.
    await cards.first().getByRole('button', { name: 'Send to Edit' }).click();
    await page.getByRole('heading', { name: 'Edit' }).waitFor();
    const sent = await page.getByRole('region', { name: 'drop a photo here' }).innerText();
    expect(sent).toMatch(/\.png$/);
  });

  it('restore one photo', async (ctx) => {
    if (!restorePack) {
      console.log('skipped: no restoration pack under models/packs');
      ctx.skip();
    }
    const noisy = await makePhoto(path.join(work, 'noisy', 'noisy.png'), 96, 40, 7);
    await nav('restore');
    await page.getByTestId('mode-photo').check();
    bridge.answer('openImage', noisy);
    await page.getByTestId('restore-open').click();
    await page.getByTestId('restore-run').click();
    await page.getByTestId('after-image').waitFor({ timeout: 120_000 });
    const src = await page.getByTestId('after-image').getAttribute('src');
    const restored = decodeURIComponent(String(src).split('/image/')[1] ?? '');
    const meta = await sharp(restored).metadata();
    expect([meta.width, meta.height]).toEqual([96, 96]);
    await shot('restore-photo');
  });

  it('restore a folder with a corrupt file: finishes and reports it', async (ctx) => {
    if (!restorePack) {
      console.log('skipped: no restoration pack under models/packs');
      ctx.skip();
    }
    const input = path.join(work, 'batch');
    await makePhoto(path.join(input, 'a.png'), 64, 30, 2);
    await makePhoto(path.join(input, 'b.png'), 64, 30, 3);
    await makePhoto(path.join(input, 'sub', 'c.png'), 64, 30, 4);
    writeFileSync(path.join(input, 'broken.png'), 'this is not a PNG file');
    const output = path.join(work, 'batch-restored');
    mkdirSync(output, { recursive: true });
    await page.getByTestId('mode-folder').check();
    bridge.answer('openFolder', input);
    await page.getByTestId('restore-folder').click();
    bridge.answer('openFolder', output);
    await page.getByTestId('restore-output').click();
    await page.getByTestId('restore-folder-run').click();
    await page.getByTestId('restore-report').waitFor({ timeout: 180_000 });
    const rows = page.getByTestId('restore-table').locator('tbody tr');
    expect(await rows.count()).toBe(4);
    expect(await page.getByTestId('restore-table').locator('tr[data-status="ok"]').count()).toBe(3);
    const failed = page.getByTestId('restore-table').locator('tr[data-status="failed"]');
    expect(await failed.count()).toBe(1);
    expect(await failed.innerText()).toMatch(/broken\.png/);
    expect(await page.getByTestId('restore-summary').innerText()).toMatch(/3 restored.*1 failed/s);
    const report = (await page.getByTestId('restore-report').locator('code').innerText()).trim();
    const json = JSON.parse(readFileSync(report, 'utf8')) as unknown;
    expect(JSON.stringify(json)).toContain('broken.png');
    expect(existsSync(path.join(output, 'sub', 'c.png'))).toBe(true);
    await shot('restore-folder');
  });

  it('pause a folder restore, then resume without redoing finished files', async (ctx) => {
    if (!restorePack) {
      console.log('skipped: no restoration pack under models/packs');
      ctx.skip();
    }
    const input = path.join(work, 'pause');
    for (let i = 0; i < 6; i++) await makePhoto(path.join(input, `p${i}.png`), 128, 25, 10 + i);
    const output = path.join(work, 'pause-restored');
    mkdirSync(output, { recursive: true });
    bridge.answer('openFolder', input);
    await page.getByTestId('restore-folder').click();
    bridge.answer('openFolder', output);
    await page.getByTestId('restore-output').click();
    await page.getByTestId('restore-folder-run').click();
    const table = page.getByTestId('restore-table');
    await table.locator('tr[data-status="ok"]').first().waitFor({ timeout: 60_000 });
    await page.getByTestId('restore-pause').click();
    await page
      .getByTestId('restore-message')
      .filter({ hasText: 'Paused' })
      .waitFor({ timeout: 60_000 });
    const donePaused = await table.locator('tr[data-status="ok"]').count();
    expect(donePaused).toBeGreaterThanOrEqual(1);
    expect(donePaused).toBeLessThan(6);
    await page.getByTestId('restore-resume').click();
    await page.getByTestId('restore-report').waitFor({ timeout: 120_000 });
    expect(await table.locator('tr[data-status="ok"]').count()).toBe(6);
    // The resumed run skipped what was already restored instead of redoing it.
    const lastDone = [...bridge.events].reverse().find((e) => e.type === 'done');
    const items = (lastDone?.type === 'done' ? lastDone.result.items : []) as { status: string }[];
    expect(items.filter((i) => i.status === 'skipped')).toHaveLength(donePaused);
  });

  it('import a broken pack: a clear error naming what is wrong', async () => {
    await nav('models');
    const first = page.getByTestId('pack-list').locator('button').first();
    await first.click();
    await page.getByTestId('pack-card').locator('h2').first().waitFor();
    // Each network with the precision read off its graph.
    await page.getByTestId('pack-networks').waitFor();
    expect(await page.getByTestId('pack-networks').innerText()).toMatch(
      /unet\s+fp32\s+sample float32/,
    );
    await shot('models');
    const broken = path.join(work, 'broken-pack');
    mkdirSync(broken, { recursive: true });
    writeFileSync(
      path.join(broken, 'pack.json'),
      JSON.stringify({ format: 'retrace-pack/1', id: 'Broken Pack!', name: 'x' }),
    );
    bridge.answer('openFolder', broken);
    await page.getByTestId('import-pack').click();
    const error = page.getByTestId('import-error');
    await error.waitFor();
    const text = await error.innerText();
    expect(text).toMatch(/pack\.json/);
    expect(text).toMatch(/id|task|components/);
    await shot('broken-pack');
  });

  it('cancel a running job: progress moves, cancel lands within one network call', async () => {
    await nav('generate');
    // The tiny fixture: many short network calls, so the test sees progress move quickly.
    await page.getByTestId('gen-model').selectOption('tiny-sd');
    await page.getByTestId('gen-steps').fill('400');
    await page.getByTestId('gen-count').fill('1');
    await page.getByTestId('gen-run').click();
    const phase = page.getByTestId('job-phase');
    const seen = new Set<string>();
    await expect
      .poll(
        async () => {
          seen.add(await phase.innerText());
          return [...seen].filter((t) => /\d+\/\d+/.test(t)).length;
        },
        { timeout: 60_000, interval: 50 },
      )
      .toBeGreaterThanOrEqual(3);
    await shot('progress');
    const jobId = [...bridge.events].reverse().find((e) => e.type === 'queued')?.jobId;
    // Where the event stream stood when the engine answered the cancel request: the host reads
    // it between two network calls, so after that at most the call in flight may report.
    let answeredAt = -1;
    const handlers = bridge.handlers as Record<string, (r: unknown) => unknown>;
    const cancel = handlers['jobs:cancel'] as (r: unknown) => Promise<unknown>;
    handlers['jobs:cancel'] = async (r) => {
      const reply = await cancel(r);
      answeredAt = bridge.events.length;
      return reply;
    };
    await page.getByTestId('job-cancel').click();
    await expect
      .poll(() => page.getByTestId('job-status').innerText(), { timeout: 10_000 })
      .toBe('cancelled');
    handlers['jobs:cancel'] = cancel;
    expect(answeredAt).toBeGreaterThan(0);
    const after = bridge.events
      .slice(answeredAt)
      .filter((e) => e.jobId === jobId && e.type === 'progress');
    expect(after.length).toBeLessThanOrEqual(1);
    const progress = bridge.events.filter((e) => e.jobId === jobId && e.type === 'progress');
    const last = progress.at(-1);
    expect(last?.type === 'progress' && last.progress.step < last.progress.total).toBe(true);
    await shot('cancel');
  });

  it('an engine crash fails the running job with a message, and the engine comes back', async () => {
    await nav('generate');
    await page.getByTestId('gen-steps').fill('400');
    await page.getByTestId('gen-run').click();
    await expect
      .poll(() => page.getByTestId('job-status').innerText(), { timeout: 60_000 })
      .toBe('running');
    // The window stays responsive while the engine works: switching views answers at once.
    await nav('queue');
    await page.getByTestId('queue-running').locator('li.panel').first().waitFor({ timeout: 5_000 });
    bridge.killHost();
    const failed = page.getByTestId('queue-finished').locator('tr', { hasText: 'failed' });
    await failed.first().waitFor({ timeout: 30_000 });
    expect(await failed.first().innerText()).toMatch(/engine was killed.*restarted/);
    await shot('queue');
    // The restarted engine answers and runs jobs again.
    await nav('generate');
    await page.getByTestId('gen-steps').fill('4');
    await page.getByTestId('gen-run').click();
    await expect
      .poll(() => page.getByTestId('job-status').innerText(), { timeout: 60_000 })
      .toBe('done');
    expect(bridge.crashes.join('\n')).toMatch(/killed/);
  });

  it('shows the detected execution providers and saves settings', async () => {
    await nav('settings');
    await expect.poll(() => page.getByTestId('providers').innerText()).toMatch(/cpu/);
    // Automatic: the software-only WebGPU adapter is passed over, and the page says why.
    await page.getByTestId('set-provider').selectOption('auto');
    await expect
      .poll(() => page.getByTestId('providers').innerText())
      .toMatch(
        /webgpu passed over: the only Vulkan driver is a software rasteriser \(lvp_icd\.x86_64\.json\)/,
      );
    await page.getByTestId('set-theme').selectOption('dark');
    await expect.poll(() => page.locator('html').getAttribute('data-theme')).toBe('dark');
    await shot('settings');
    await page.getByTestId('set-provider').selectOption('cpu');
    await page.getByTestId('set-theme').selectOption('system');
    // The output folder changes only through the folder dialog; a folder the page merely names
    // (as a compromised page would) is refused and never granted.
    const chosen = path.join(work, 'chosen-outputs');
    mkdirSync(chosen, { recursive: true });
    bridge.answer('openFolder', chosen);
    await page.getByRole('button', { name: 'Change…' }).click();
    await expect.poll(() => page.locator('main').innerText()).toContain(chosen);
    const forged = await page.evaluate(async () => {
      const w = globalThis as unknown as {
        retrace: { invoke(c: string, r: unknown): Promise<unknown> };
      };
      return w.retrace.invoke('settings:set', { outputDir: '/' }).then(
        () => 'accepted',
        (e: unknown) => String(e),
      );
    });
    expect(forged).toMatch(/outputDir \/ was not chosen in a folder dialog/);
    expect(bridge.grants.canRead('/etc/passwd')).toBe(false);
  });

  it('keyboard, menu commands and drag-and-drop reach the views', async () => {
    await page.keyboard.press('Control+2');
    await page.getByRole('heading', { name: 'Generate' }).waitFor();
    await page.keyboard.press('Control+1');
    await page.getByRole('heading', { name: 'Edit' }).waitFor();
    // View → Compare toggles the before/after slider.
    const compare = page.getByLabel('Compare with slider');
    const before = await compare.isChecked();
    bridge.menu('compare');
    await expect.poll(() => compare.isChecked()).toBe(!before);
    bridge.menu('compare');
    await expect.poll(() => compare.isChecked()).toBe(before);
    // File → Settings… switches view.
    bridge.menu('settings');
    await page.getByRole('heading', { name: 'Settings' }).waitFor();
    await nav('edit');
    // A photo dropped on the Edit view opens it (its path comes from the preload, as in Electron).
    const dropped = await makeScene(path.join(work, 'dropped', 'dropped.png'));
    await page.evaluate(
      ([name, file, bytes]) => {
        (globalThis as unknown as { __retraceDropped: Record<string, string> }).__retraceDropped = {
          [name]: file,
        };
        const g = globalThis as unknown as {
          DataTransfer: new () => { items: { add(f: unknown): void } };
          File: new (parts: unknown[], name: string, o: object) => unknown;
          DragEvent: new (t: string, o: object) => unknown;
          document: { querySelector(s: string): { dispatchEvent(e: unknown): void } };
        };
        const dt = new g.DataTransfer();
        dt.items.add(new g.File([new Uint8Array(bytes)], name, { type: 'image/png' }));
        const target = g.document.querySelector('[aria-label="drop a photo here"]');
        target.dispatchEvent(
          new g.DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }),
        );
      },
      ['dropped.png', dropped, [...readFileSync(dropped)]] as const,
    );
    await page
      .getByRole('region', { name: 'drop a photo here' })
      .getByText('dropped.png')
      .waitFor();
    // The drop granted that file only: a path the page names itself is refused.
    const named = await page.evaluate(
      async (p) => {
        const w = globalThis as unknown as {
          retrace: { invoke(c: string, r: unknown): Promise<unknown> };
        };
        return w.retrace.invoke('files:openImage', { path: p }).then(
          () => 'accepted',
          (e: unknown) => String(e),
        );
      },
      path.join(ROOT, 'README.md'),
    );
    expect(named).toMatch(/files:openImage: .*README\.md was not opened or chosen/);
  });

  it('labels every control, in every view, in light and dark themes', async () => {
    for (const view of ['edit', 'generate', 'restore', 'models', 'queue', 'settings']) {
      await nav(view);
      await page.locator('main h1').waitFor();
      const unlabelled = await page.locator('main').evaluate((main) =>
        [...main.querySelectorAll('input, select, textarea, button')]
          .filter((el) => {
            const e = el as unknown as {
              labels?: { length: number };
              getAttribute(n: string): string | null;
              textContent: string | null;
              tagName: string;
            };
            const named = (e.labels?.length ?? 0) > 0 || !!e.getAttribute('aria-label');
            return e.tagName === 'BUTTON' ? !named && !e.textContent?.trim() : !named;
          })
          .map((el) => (el as unknown as { outerHTML: string }).outerHTML.slice(0, 120)),
      );
      expect(unlabelled, view).toEqual([]);
    }
    await nav('settings');
    await page.getByTestId('set-theme').selectOption('dark');
    await nav('restore');
    await page.getByTestId('mode-folder').check();
    await shot('restore-folder-dark');
    await nav('settings');
    await page.getByTestId('set-theme').selectOption('system');
  });

  it('refuses images outside the allow-list and never logs a CSP violation', async () => {
    const status = await page.evaluate(
      async (p) => (await fetch(`/image/${encodeURIComponent(p)}`)).status,
      path.join(ROOT, 'package.json'),
    );
    expect(status).toBe(403);
    const outside = await page.evaluate(
      async (p) => (await fetch(`/image/${encodeURIComponent(p)}`)).status,
      path.join(TINY_SD, '..', 'networks', 'x.png'),
    );
    expect(outside).toBe(403);
    expect(pageErrors.filter((e) => /Content Security Policy|Refused/i.test(e))).toEqual([]);
  });
});
