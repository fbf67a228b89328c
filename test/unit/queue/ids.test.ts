// Job ids (issue 13): the same file of the same batch always gets the same id (so a second
// enqueue adds nothing), and anything that changes the output bytes or where they go changes it.
import { describe, expect, it } from 'vitest';
import {
  isRestoreJobId,
  JOB_FORMAT,
  restoreJobId,
  type RestoreJobData,
} from '../../../electron/engine/queue/jobs.js';

const base: RestoreJobData = {
  v: JOB_FORMAT,
  file: '/data/in/a/b.png',
  relative: 'a/b.png',
  outputDir: '/data/out',
  model: 'restore-denoise',
  pack: { id: 'restore-denoise', unetSha256: 'ab'.repeat(32) },
  params: { seed: 0, format: 'same' },
};
const output = '/data/out/a/b.png';

describe('restoreJobId', () => {
  it('is stable, and a valid BullMQ custom id', () => {
    const id = restoreJobId(base, output);
    expect(restoreJobId(structuredClone(base), output)).toBe(id);
    expect(id).toMatchInlineSnapshot(`"rtb5946314a30b0a17ed806a85a2af378b3d7ec33c"`);
    expect(isRestoreJobId(id)).toBe(true);
    expect(id).not.toContain(':');
    expect(/^\d+$/.test(id)).toBe(false);
  });

  it('changes with the path, output, pack and every parameter', () => {
    const id = restoreJobId(base, output);
    const variants: [RestoreJobData, string][] = [
      [{ ...base, relative: 'a/c.png', file: '/data/in/a/c.png' }, '/data/out/a/c.png'],
      [{ ...base, file: '/other/in/a/b.png' }, output],
      [base, '/elsewhere/a/b.png'],
      [{ ...base, pack: { ...base.pack, unetSha256: 'cd'.repeat(32) } }, output],
      [{ ...base, pack: { ...base.pack, id: 'restore-lowlight' } }, output],
      [{ ...base, params: { ...base.params, seed: 1 } }, output],
      [{ ...base, params: { ...base.params, format: 'png' } }, output],
      [{ ...base, params: { ...base.params, tile: 128 } }, output],
      [{ ...base, params: { ...base.params, overlap: 8 } }, output],
      [{ ...base, params: { ...base.params, steps: 5 } }, output],
      [{ ...base, params: { ...base.params, deterministic: true } }, output],
    ];
    const ids = new Set([id, ...variants.map(([d, o]) => restoreJobId(d, o))]);
    expect(ids.size).toBe(variants.length + 1);
  });

  it('does not depend on how the pack was named (id or folder)', () => {
    expect(restoreJobId({ ...base, model: '/packs/restore-denoise' }, output)).toBe(
      restoreJobId(base, output),
    );
  });
});
