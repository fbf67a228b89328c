// The security review's findings (issue 14), each replayed against main's real modules — the
// channel handlers, the IPC dispatcher, the grants, the preload's drop reporter and the pack
// loader — with only the engine process stubbed. Each test failed on the code before the fix.
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { jobRequestSchema } from '../../../electron/contract/channels.js';
import { MAX_CARD_BYTES, readCard } from '../../../electron/engine/engine.js';
import { loadPack } from '../../../electron/engine/packs/loader.js';
import { Grants } from '../../../electron/main/grants.js';
import { createHandlers, type Dialogs } from '../../../electron/main/handlers.js';
import { acceptDropReport, dispatch, type Handlers } from '../../../electron/main/ipc.js';
import { normalisePath } from '../../../electron/main/protocol.js';
import { AppState } from '../../../electron/main/state.js';
import { installDropReporter, type DropEventLike } from '../../../electron/preload/api.js';
import { makeRestorePack } from '../packs/helpers.js';

const root = realpathSync(mkdtempSync(path.join(tmpdir(), 'retrace-security-')));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Stands in for a sensitive place outside anything the user chose (like /etc or ~/.ssh). */
const outside = path.join(root, 'outside');
mkdirSync(outside);
const secret = path.join(outside, 'id_ed25519');
writeFileSync(secret, 'PRIVATE KEY');

const own = { senderFrame: { url: 'retrace://app/index.html', parent: null } };

interface Setup {
  handlers: Handlers;
  grants: Grants;
  state: AppState;
  out: string;
  engineCalls: { channel: string; request: unknown }[];
  dialogs: Record<keyof Dialogs, (string | undefined)[]>;
  call(
    channel: string,
    payload: unknown,
  ): Promise<{ ok: boolean; error?: string; reply?: unknown }>;
}

let n = 0;
function setup(): Setup {
  const dir = path.join(root, `app-${(n += 1)}`);
  const out = path.join(dir, 'outputs');
  mkdirSync(out, { recursive: true });
  const grants = new Grants([out]);
  const state = new AppState(path.join(dir, 'state.json'));
  const engineCalls: Setup['engineCalls'] = [];
  const dialogs: Setup['dialogs'] = {
    openImage: [],
    openFolder: [],
    openInversion: [],
    saveFile: [],
  };
  const take = (k: keyof Dialogs) => Promise.resolve(dialogs[k].shift());
  const handlers = createHandlers({
    engine: {
      request: (channel, request) => {
        engineCalls.push({ channel, request });
        if (channel === 'files:openImage')
          return Promise.resolve({ url: 'retrace://image/x', path: '/x', width: 1, height: 1 });
        if (channel === 'jobs:start') return Promise.resolve({ jobId: 'job-1' });
        return Promise.resolve({});
      },
    },
    grants,
    state,
    dialogs: {
      openImage: () => take('openImage'),
      openFolder: () => take('openFolder'),
      openInversion: () => take('openInversion'),
      saveFile: () => take('saveFile'),
    },
    outputRoot: () => state.settings.outputDir ?? out,
    info: () => ({}),
  });
  const call = (channel: string, payload: unknown) =>
    dispatch(channel as never, own, payload, handlers) as Promise<{
      ok: boolean;
      error?: string;
      reply?: unknown;
    }>;
  return { handlers, grants, state, out, engineCalls, dialogs, call };
}

const restore = (params: Record<string, unknown>) => ({
  kind: 'restore',
  params: { model: 'denoise', ...params },
});

describe('finding 1: settings:set cannot grant a folder', () => {
  let s: Setup;
  beforeEach(() => {
    s = setup();
  });
  it("refuses outputDir '/' and '/etc' never becomes readable or writable", async () => {
    const r = await s.call('settings:set', { outputDir: '/' });
    expect(r).toMatchObject({ ok: false });
    expect(r.error).toMatch(/settings:set: outputDir \/ was not chosen in a folder dialog/);
    expect(s.state.settings.outputDir).toBeUndefined();
    expect(s.grants.canRead('/etc/passwd')).toBe(false);
    expect(s.grants.canWriteFolder('/etc')).toBe(false);
    const job = await s.call('jobs:start', restore({ inputs: [s.out], outputDir: '/etc' }));
    expect(job.error).toMatch(/jobs:start: \/etc was not opened or chosen/);
    expect(s.engineCalls.filter((c) => c.channel === 'jobs:start')).toEqual([]);
  });
  it('stores a folder the user chose in the dialog, as its real path', async () => {
    const picked = path.join(root, 'picked-out');
    const viaLink = path.join(root, 'picked-out-link');
    mkdirSync(picked);
    symlinkSync(picked, viaLink);
    s.dialogs.openFolder.push(viaLink);
    expect(await s.call('dialog:openFolder', {})).toMatchObject({ ok: true });
    const r = await s.call('settings:set', { outputDir: viaLink });
    expect(r).toMatchObject({ ok: true });
    expect(s.state.settings.outputDir).toBe(picked);
    // Settings without a folder are not affected by the rule.
    expect(await s.call('settings:set', { theme: 'dark' })).toMatchObject({ ok: true });
  });
});

describe('finding 1: a restore report cannot overwrite a file elsewhere', () => {
  it('must be a .json inside the output folder', async () => {
    const s = setup();
    const dotfile = path.join(outside, '.bashrc');
    writeFileSync(dotfile, 'export PATH');
    const base = { inputs: [s.out], outputDir: path.join(s.out, 'restored') };
    for (const [report, why] of [
      [dotfile, /must be a \.json file inside the output folder/],
      [path.join(outside, 'r.json'), /must be a \.json file inside the output folder/],
      [path.join(s.out, 'restored', 'notes.txt'), /must be a \.json file/],
      [path.join(s.out, 'restored', '..', '..', 'outside', 'r.json'), /inside the output folder/],
    ] as const) {
      const r = await s.call('jobs:start', restore({ ...base, report }));
      expect(r.error, report).toMatch(why);
    }
    expect(readFileSync(dotfile, 'utf8')).toBe('export PATH');
    const ok = await s.call(
      'jobs:start',
      restore({ ...base, report: path.join(s.out, 'restored', 'run.json') }),
    );
    expect(ok).toMatchObject({ ok: true });
    expect(s.engineCalls.filter((c) => c.channel === 'jobs:start')).toHaveLength(1);
  });
});

describe('finding 3: files:openImage reads only granted paths', () => {
  it('refuses a path the page names, accepts one the preload saw dropped', async () => {
    const s = setup();
    const photo = path.join(root, 'dropped.png');
    writeFileSync(photo, 'png');
    const r = await s.call('files:openImage', { path: secret });
    expect(r.error).toMatch(/files:openImage: .*id_ed25519 was not opened or chosen/);
    expect(s.engineCalls).toEqual([]);
    expect(s.grants.canRead(secret)).toBe(false);
    expect(s.state.recent).toEqual([]);
    // A drop report from anything but the app's top frame, or of a path that does not exist,
    // grants nothing.
    const frame = { senderFrame: { url: 'https://evil.example/', parent: null } };
    expect(acceptDropReport(frame, [photo], s.grants)).toEqual([]);
    expect(acceptDropReport(own, 'not a list', s.grants)).toEqual([]);
    expect(acceptDropReport(own, [path.join(root, 'nope.png')], s.grants)).toEqual([]);
    expect((await s.call('files:openImage', { path: photo })).ok).toBe(false);
    // The preload's report of a real drop grants exactly that file.
    expect(acceptDropReport(own, [photo], s.grants)).toEqual([photo]);
    expect(await s.call('files:openImage', { path: photo })).toMatchObject({ ok: true });
    expect(s.state.recent).toEqual([photo]);
    expect((await s.call('files:openImage', { path: secret })).ok).toBe(false);
  });
  it('the preload reports only trusted drops, and only files Electron knows a path for', () => {
    let listener: ((e: DropEventLike) => void) | undefined;
    let capture = false;
    const target = {
      addEventListener: (_t: 'drop', l: (e: DropEventLike) => void, c: boolean) => {
        listener = l;
        capture = c;
      },
    };
    const reports: string[][] = [];
    const real = { name: 'a.png' } as File;
    const forged = { name: 'b.png' } as File;
    installDropReporter(
      target,
      (f) => (f === real ? '/photos/a.png' : ''),
      (p) => reports.push(p),
    );
    expect(capture).toBe(true);
    const files = (list: File[]) => ({ files: list as ArrayLike<File> });
    listener?.({ isTrusted: false, dataTransfer: files([real]) });
    listener?.({ isTrusted: true, dataTransfer: files([forged]) });
    listener?.({ isTrusted: true, dataTransfer: null });
    expect(reports).toEqual([]);
    listener?.({ isTrusted: true, dataTransfer: files([real, forged]) });
    expect(reports).toEqual([['/photos/a.png']]);
  });
});

describe('finding 4: a job names its model by pack id only', () => {
  it.each([
    ['an absolute folder', '/home/user/Downloads/evil-model'],
    ['a relative folder', '../evil'],
    ['a dot folder', '.'],
    ['a Windows path', 'C:\\models\\evil'],
  ])('refuses %s before the engine sees it', async (_name, model) => {
    const s = setup();
    const r = await s.call('jobs:start', { kind: 'generate', params: { model, prompt: 'x' } });
    expect(r.error).toMatch(/params\.model: must be a pack id/);
    expect(s.engineCalls).toEqual([]);
    // The engine host parses the same schema, so it refuses too.
    expect(
      jobRequestSchema.safeParse({
        kind: 'restore',
        params: { model, inputs: ['/a'], outputDir: '/b' },
      }).success,
    ).toBe(false);
  });
  it('accepts a pack id', async () => {
    const s = setup();
    const r = await s.call('jobs:start', {
      kind: 'generate',
      params: { model: 'tiny-sd', prompt: 'x' },
    });
    expect(r).toMatchObject({ ok: true });
  });
});

describe('finding 5: write grants do not escape through a symlink', () => {
  it('judges a file that does not exist yet by the real path of its deepest existing folder', async () => {
    const s = setup();
    const link = path.join(s.out, 'link');
    symlinkSync(outside, link);
    expect(normalisePath(path.join(link, 'new', 'file.png'))).toBe(
      path.join(outside, 'new', 'file.png'),
    );
    expect(s.grants.canWriteFolder(path.join(link, 'new'))).toBe(false);
    const r = await s.call(
      'jobs:start',
      restore({ inputs: [s.out], outputDir: path.join(link, 'new') }),
    );
    expect(r.error).toMatch(/link\/new was not opened or chosen/);
  });
  it('follows a dangling link to where a write through it would land', () => {
    const s = setup();
    const dangling = path.join(s.out, 'report.json');
    symlinkSync(path.join(outside, 'planted.json'), dangling);
    expect(normalisePath(dangling)).toBe(path.join(outside, 'planted.json'));
    const job = restore({ inputs: [s.out], outputDir: s.out, report: dangling });
    expect(s.grants.refusal(jobRequestSchema.parse(job))).toMatch(/inside the output folder/);
    const loop = path.join(s.out, 'loop');
    symlinkSync(loop, loop);
    expect(normalisePath(path.join(loop, 'x'))).toBeUndefined();
  });
});

describe('finding 8: pack files and cards must live in their pack folder', () => {
  it('refuses a MODEL_CARD.md linked to a file outside, naming it', async () => {
    const dir = await makeRestorePack(path.join(root, 'packs'), 'linked-card');
    symlinkSync(secret, path.join(dir, 'MODEL_CARD.md'));
    await expect(loadPack(dir)).rejects.toThrow(
      /MODEL_CARD\.md: .*MODEL_CARD\.md resolves to .*id_ed25519, outside the pack folder/,
    );
  });
  it('refuses a network linked outside, accepts links inside', async () => {
    const dir = await makeRestorePack(path.join(root, 'packs'), 'linked-unet');
    const elsewhere = path.join(outside, 'unet.onnx');
    writeFileSync(elsewhere, readFileSync(path.join(dir, 'unet.onnx')));
    rmSync(path.join(dir, 'unet.onnx'));
    symlinkSync(elsewhere, path.join(dir, 'unet.onnx'));
    await expect(loadPack(dir)).rejects.toThrow(
      /components\.unet\.file: .*outside the pack folder/,
    );
    const inside = await makeRestorePack(path.join(root, 'packs'), 'inside-link');
    writeFileSync(path.join(inside, 'card-source.md'), '# Card');
    symlinkSync('card-source.md', path.join(inside, 'MODEL_CARD.md'));
    expect((await loadPack(inside)).cardFile).toBe(path.join(inside, 'MODEL_CARD.md'));
  });
  it('sends at most MAX_CARD_BYTES of a card to the window', async () => {
    const big = path.join(root, 'big-card.md');
    writeFileSync(big, `${'# heading\n'.repeat(MAX_CARD_BYTES / 5)}`);
    const text = await readCard(big);
    expect(Buffer.byteLength(text)).toBeLessThan(MAX_CARD_BYTES + 100);
    expect(text).toMatch(/card cut at 256 KiB/);
    const small = path.join(root, 'small-card.md');
    writeFileSync(small, '# Card\n');
    expect(await readCard(small)).toBe('# Card\n');
  });
});
