// Exactness under stress (issue 17): an inversion replayed with its source prompt gives back the
// inverted latent bit for bit — not merely within 1e-9 — whatever else happens around it. 200
// varied cases (sizes, steps, strength, γ, guidance, prompts) in one process on two models (1 and
// 2 intra-op threads), edits and source replays shuffled between them; then 200 more across
// processes, inverted with one thread count, written to inversion files, and replayed in another
// process with the other, in a shuffled order. The work runs in exactness-worker.mjs on the
// compiled engine (built by test/global-setup.ts). About 45 s on two cores.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const worker = path.resolve('test/integration/exactness-worker.mjs');
let dir: string;

interface Report {
  cases: number;
  replays: number;
  mismatches: { case: number; maxAbsDiff: number }[];
  unchangedEdits: number[];
  seconds: number;
}

function work(mode: string, args: Record<string, unknown>): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, mode, JSON.stringify(args)]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`worker ${mode} exited ${code}: ${stderr}`));
      else resolve(JSON.parse(stdout) as Report);
    });
  });
}

function expectExact(report: Report, cases: number): void {
  console.log(
    `${cases} cases, ${report.replays} replays in ${report.seconds.toFixed(1)} s: ` +
      `${report.mismatches.length} source replays not bit-exact, ${report.unchangedEdits.length} edits unchanged`,
  );
  expect(report.mismatches).toEqual([]);
  expect(report.unchangedEdits).toEqual([]);
  expect(report.replays).toBe(2 * cases);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'retrace-exactness-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('BDIA exactness under stress (tiny SD, real ONNX networks)', () => {
  it('200 invert → replay(edit) / replay(source) cycles in one process, 1 and 2 threads, shuffled: every source replay bit-exact', async () => {
    expectExact(await work('cycles', { from: 0, to: 200, seed: 17 }), 200);
  }, 300_000);

  it('200 cycles across processes: inverted with 1 (or 2) threads, replayed from files with 2 (or 1), shuffled: bit-exact', async () => {
    const a = { from: 200, to: 300 };
    const b = { from: 300, to: 400 };
    await work('invert', { ...a, threads: 1, dir });
    await work('invert', { ...b, threads: 2, dir });
    const [ra, rb] = [
      await work('replay', { ...a, threads: 2, dir, seed: 5 }),
      await work('replay', { ...b, threads: 1, dir, seed: 6 }),
    ];
    expectExact(ra, 100);
    expectExact(rb, 100);
  }, 300_000);
});
