// Child process of `npm run bench`: one full-resolution masked edit of a 24-megapixel photo, alone
// in its process so that its peak RSS is the edit job's (ALGORITHMS.md §5; issue 10), then the
// O = S + M·up(Δ) composite timed on its own (median of 3) with a Stable-Diffusion-sized change
// (768 × 512). Prints one JSON line on stdout.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [model, input, mask, outputDir, threads] = process.argv.slice(2);
if (!model || !input || !mask || !outputDir) {
  console.error('usage: node bench/edit-child.mjs MODEL PHOTO MASK OUTPUT_DIR [THREADS]');
  process.exit(2);
}
const { Engine } = await import(path.join(root, 'dist/electron/engine/engine.js'));
const photoModule = await import(path.join(root, 'dist/electron/engine/images/photo.js'));
await mkdir(outputDir, { recursive: true });
const engine = new Engine({
  userDir: path.join(outputDir, 'user'),
  runtime: { provider: 'cpu', threads: Number(threads ?? 0) },
});
await (await engine.model(model)).warm();
const baselineMiB = process.memoryUsage().rss / 2 ** 20;
const phases = {};
let phase;
let phaseStart = performance.now();
const started = performance.now();
const result = await engine.edit(
  {
    model,
    image: input,
    sourcePrompt: 'a red disc and a blue box',
    prompt: 'a green disc and a blue box',
    mask,
    steps: 10,
  },
  path.join(outputDir, 'edited.png'),
  {
    onProgress: (e) => {
      if (e.phase === phase) return;
      const now = performance.now();
      if (phase) phases[phase] = (phases[phase] ?? 0) + (now - phaseStart) / 1000;
      phase = e.phase;
      phaseStart = now;
    },
  },
);
const seconds = (performance.now() - started) / 1000;
if (phase)
  phases[`${phase} (to the end: composite + PNG encode and write)`] =
    (performance.now() - phaseStart) / 1000;
// maxRSS is in KiB on Linux and macOS (libuv's ru_maxrss).
const peakMiB = process.resourceUsage().maxRSS / 1024;
await engine.close();

const photo = await photoModule.readPhoto(input);
const pixelMask = await photoModule.readMask(mask, photo.width, photo.height);
const [dw, dh] = photo.width >= photo.height ? [768, 512] : [512, 768];
const chw = new Float32Array(3 * dw * dh);
for (let i = 0; i < chw.length; i++) chw[i] = 0.2 * Math.sin(i * 0.001);
const times = [];
for (let r = 0; r < 3; r++) {
  const t = performance.now();
  await photoModule.compositeChange(photo, { chw, width: dw, height: dh }, pixelMask.values);
  times.push((performance.now() - t) / 1000);
}
times.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    status: 'ok',
    peakRssMiB: peakMiB,
    baselineRssMiB: baselineMiB,
    seconds,
    phases,
    width: result.width,
    height: result.height,
    nfe: result.nfe,
    compositeSeconds: times[1],
    compositeRuns: times,
  }),
);
