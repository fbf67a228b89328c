// `npm run bench:edit`: the Shapes edit benchmark (issue 10, acceptance 4). The factory renders
// N two-object scenes as 512 × 512 "photos" with a recolouring edit each
// (models/factory/shapes/edit_bench.py prepare); the engine edits every photo three ways with
// shapes-base — BDIA with the automatic mask, BDIA without a mask, naive DDIM inversion with the
// automatic mask — and the factory scores the results with its detector (… score). Prints the
// table and writes bench/results/shapes-edit.json. RETRACE_EDIT_BENCH_N sets N (default 100).
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Engine } = await import(path.join(root, 'dist/electron/engine/engine.js'));
const python =
  process.env.RETRACE_BENCH_PYTHON ?? path.join(root, 'models/factory/.venv/bin/python');
const n = Number(process.env.RETRACE_EDIT_BENCH_N ?? 100);
const threads = Number(process.env.RETRACE_BENCH_THREADS ?? 0);
const work = await mkdtemp(path.join(os.tmpdir(), 'retrace-edit-bench-'));
const factory = (...args) =>
  execFileSync(python, ['-m', 'shapes.edit_bench', ...args], {
    cwd: path.join(root, 'models/factory'),
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });

process.stdout.write(factory('prepare', '--out', work, '--n', String(n)));
const spec = JSON.parse(await readFile(path.join(work, 'scenes.json'), 'utf8'));
const engine = new Engine({
  userDir: path.join(work, 'user'),
  runtime: { provider: 'cpu', threads },
});
const methods = {
  'bdia-auto-mask': { method: 'bdia', autoMask: true },
  'bdia-no-mask': { method: 'bdia', autoMask: false },
  'ddim-inversion-auto-mask': { method: 'ddim-inversion', autoMask: true },
};
const seconds = {};
const nfe = {};
const failures = [];
for (const [name, settings] of Object.entries(methods)) {
  await mkdir(path.join(work, name), { recursive: true });
  const started = performance.now();
  nfe[name] = [];
  for (const scene of spec.scenes) {
    const out = path.join(work, name, `${scene.name}.png`);
    try {
      const result = await engine.edit(
        {
          model: 'shapes-base',
          image: path.join(work, `${scene.name}.png`),
          sourcePrompt: scene.source,
          prompt: scene.edit,
          ...settings,
          ...(settings.autoMask
            ? { maskOut: path.join(work, name, `${scene.name}-mask.png`) }
            : {}),
        },
        out,
      );
      nfe[name].push(result.nfe);
    } catch (err) {
      failures.push(`${name} ${scene.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  seconds[name] = (performance.now() - started) / 1000 / spec.scenes.length;
  console.log(`${name}: ${seconds[name].toFixed(2)} s per edit`);
}
await engine.close();
for (const f of failures) console.log(`failed: ${f}`);
const target = path.join(root, 'bench/results/shapes-edit.json');
process.stdout.write(factory('score', '--dir', work, '--out', target));
// Timing and call counts go into the same file.
const written = JSON.parse(await readFile(target, 'utf8'));
for (const [name, row] of Object.entries(written.rows)) {
  const calls = nfe[name] ?? [];
  row.secondsPerEdit = Number((seconds[name] ?? 0).toFixed(3));
  row.medianNfe = calls.length ? calls.sort((a, b) => a - b)[Math.floor(calls.length / 2)] : null;
}
written.model = 'shapes-base';
written.failures = failures;
written.machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version };
written.date = new Date().toISOString();
const { writeFile, rename } = await import('node:fs/promises');
await writeFile(`${target}.tmp`, `${JSON.stringify(written, null, 2)}\n`);
await rename(`${target}.tmp`, target);
console.log(`wrote ${path.relative(root, target)}`);
await rm(work, { recursive: true, force: true });
