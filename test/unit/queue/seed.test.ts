// Per-file seeds (issue 13): a file's noise seed is a pure function of the batch seed and its
// relative path, shared by the local batch and the queue workers, so a file restores to the same
// bytes wherever and in whatever order it is restored.
import { describe, expect, it } from 'vitest';
import { fileSeed } from '../../../electron/engine/jobs/batch.js';
import { GaussianField } from '../../../electron/engine/runtime/rng.js';

describe('fileSeed', () => {
  it('is fixed for a batch seed and a path (pinned values)', () => {
    expect(fileSeed(0, 'a.png')).toBe(fileSeed(0, 'a.png'));
    // Pinned: changing the derivation changes every restored file; it must be on purpose.
    expect(fileSeed(0, 'a.png')).toMatchInlineSnapshot(`269155301330027`);
    expect(fileSeed(11, 'sub dir/ünï.jpg')).toMatchInlineSnapshot(`160117662190051`);
  });

  it('differs between files and between batch seeds', () => {
    const seeds = new Set<number>();
    for (let s = 0; s < 20; s++) for (let i = 0; i < 50; i++) seeds.add(fileSeed(s, `f${i}.png`));
    expect(seeds.size).toBe(1000);
    expect(fileSeed(1, 'a/b.png')).not.toBe(fileSeed(1, 'a_b.png'));
  });

  it('is a safe integer GaussianField accepts, for any batch seed the CLI allows', () => {
    for (const s of [0, 1, 2 ** 32 - 1, Number.MAX_SAFE_INTEGER]) {
      const seed = fileSeed(s, 'x.png');
      expect(Number.isSafeInteger(seed) && seed >= 0 && seed < 2 ** 48).toBe(true);
      expect(() => new GaussianField(seed)).not.toThrow();
    }
  });

  it('refuses a seed that is not a non-negative safe integer', () => {
    expect(() => fileSeed(-1, 'a.png')).toThrow(/batch seed/);
    expect(() => fileSeed(1.5, 'a.png')).toThrow(/batch seed/);
  });
});
