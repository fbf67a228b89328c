import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Grants } from '../../../electron/main/grants.js';

const root = mkdtempSync(path.join(tmpdir(), 'retrace-grants-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const out = path.join(root, 'out');
const photos = path.join(root, 'photos');

describe('grants', () => {
  it('refuses job inputs the user never opened', () => {
    const g = new Grants([out]);
    const job = {
      kind: 'invert' as const,
      params: { model: 'm', image: path.join(photos, 'a.png'), prompt: '' },
    };
    expect(g.refusal(job)).toMatch(/a\.png was not opened or chosen/);
    g.addPickedFile(path.join(photos, 'a.png'));
    expect(g.refusal(job)).toBeUndefined();
    expect(
      g.refusal({ ...job, params: { ...job.params, image: path.join(photos, 'b.png') } }),
    ).toMatch(/b\.png was not opened/);
  });
  it('lets a restore write only into a picked or output folder', () => {
    const g = new Grants([out]);
    g.addPickedFolder(photos);
    const job = {
      kind: 'restore' as const,
      params: { model: 'r', inputs: [photos], outputDir: path.join(root, 'elsewhere') },
    };
    expect(g.refusal(job)).toMatch(/elsewhere was not opened/);
    expect(
      g.refusal({
        ...job,
        params: { ...job.params, outputDir: path.join(photos, 'restored') },
      }),
    ).toBeUndefined();
    expect(
      g.refusal({ ...job, params: { ...job.params, outputDir: path.join(out, 'r') } }),
    ).toBeUndefined();
  });
  it('replays only inversions that were opened or produced here', () => {
    const g = new Grants([out]);
    expect(
      g.refusal({
        kind: 'replay',
        params: { inversion: path.join(out, 'x.inversion.safetensors') },
      }),
    ).toBeUndefined();
    expect(g.refusal({ kind: 'replay', params: { inversion: '/etc/x.safetensors' } })).toMatch(
      /^\/etc\/x\.safetensors was not opened/,
    );
  });
  it('uses a save target once', () => {
    const g = new Grants([out]);
    const target = path.join(root, 'export.png');
    expect(g.takeSaveTarget(target)).toBe(false);
    g.addSaveTarget(target);
    expect(g.takeSaveTarget(target)).toBe(true);
    expect(g.takeSaveTarget(target)).toBe(false);
  });
});
