// `npm run bench`: the engine's figures that the README quotes, measured on this machine.
// Prints medians and ratios taken in one run (shared machines are noisy) and writes
// bench/results/summary.json. Uses the bundled packs that exist and the tiny SD fixture.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Engine } = await import(path.join(root, 'dist/electron/engine/engine.js'));

const repeats = Number(process.env.RETRACE_BENCH_REPEATS ?? 3);
const threads = Number(process.env.RETRACE_BENCH_THREADS ?? 0);
const work = await mkdtemp(path.join(os.tmpdir(), 'retrace-bench-'));
const engine = new Engine({
  userDir: path.join(work, 'user'),
  runtime: { provider: 'cpu', threads },
});

const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function timed(fn) {
  const runs = [];
  let last;
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    last = await fn(i);
    runs.push((performance.now() - t) / 1000);
  }
  return { seconds: median(runs), runs, last };
}

/** A synthetic "photo": smooth colour gradients with some structure, as a PNG. */
async function syntheticPhoto(file, width, height, noise = 0) {
  const data = Buffer.alloc(width * height * 3);
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 2;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++) {
        const v =
          128 +
          80 * Math.sin((x / width) * 6 + c) * Math.cos((y / height) * 4 - c) +
          noise * 255 * rand();
        data[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
  await sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toFile(file);
  return file;
}

const packs = (await engine.listPacks()).filter((p) => p.ok);
const has = (id) => packs.some((p) => p.id === id);
const results = {
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
  repeats,
};

// 1. Exact inversion against the naive DDIM baseline.
const photo = await syntheticPhoto(path.join(work, 'photo.png'), 256, 256);
const textModels = [
  ...(has('shapes-base') ? ['shapes-base'] : []),
  path.join(root, 'test/fixtures/tiny-sd'),
];
results.inversion = [];
for (const model of textModels) {
  const params = {
    model,
    image: photo,
    prompt: 'a red circle',
    steps: 50,
    strength: 0.8,
    gamma: 0.94,
    guidance: 3,
  };
  const bdia = await timed(() => engine.roundtrip({ ...params, method: 'bdia' }));
  const naive = await timed(() => engine.roundtrip({ ...params, method: 'ddim-inversion' }));
  const row = {
    model: path.basename(model),
    bdia: {
      latentMaxAbsError: bdia.last.latentMaxAbsError,
      pixelMaxAbsError: bdia.last.pixelMaxAbsError,
      nfe: bdia.last.nfe,
      seconds: bdia.seconds,
    },
    naive: {
      latentMaxAbsError: naive.last.latentMaxAbsError,
      pixelMaxAbsError: naive.last.pixelMaxAbsError,
      nfe: naive.last.nfe,
      seconds: naive.seconds,
    },
    timeRatio: bdia.seconds / naive.seconds,
  };
  results.inversion.push(row);
  console.log(
    `inversion ${row.model}: BDIA latent ${row.bdia.latentMaxAbsError.toExponential(2)} (${row.bdia.nfe} NFE, ${row.bdia.seconds.toFixed(2)} s) | ` +
      `naive DDIM latent ${row.naive.latentMaxAbsError.toExponential(2)} (${row.naive.nfe} NFE, ${row.naive.seconds.toFixed(2)} s) | time ratio ${row.timeRatio.toFixed(2)}`,
  );
}

// 2. Time-Shift costs no network calls: wall time against plain DDIM, same seeds.
results.timeShift = [];
for (const model of textModels) {
  const base = {
    model,
    prompt: 'a red circle left of a blue square',
    steps: 10,
    seed: 1,
    count: 4,
  };
  const out = { dir: path.join(work, 'gen') };
  const ddim = await timed(() => engine.generate({ ...base, timeShift: null }, out));
  const ts = await timed(() =>
    engine.generate({ ...base, timeShift: { window: 40, cutoff: 200 } }, out),
  );
  const row = {
    model: path.basename(model),
    ddimSeconds: ddim.seconds,
    timeShiftSeconds: ts.seconds,
    ratio: ts.seconds / ddim.seconds,
    nfe: [ddim.last.nfe, ts.last.nfe],
  };
  results.timeShift.push(row);
  console.log(
    `time-shift ${row.model}: DDIM ${row.ddimSeconds.toFixed(2)} s, Time-Shift ${row.timeShiftSeconds.toFixed(2)} s (ratio ${row.ratio.toFixed(3)}), NFE ${row.nfe.join(' vs ')}`,
  );
}

// 3. Restoration throughput, one photo and the tiled path.
results.restore = [];
for (const model of ['restore-denoise', 'restore-lowlight'].filter(has)) {
  for (const side of [256, 512]) {
    const input = await syntheticPhoto(path.join(work, `noisy-${side}.png`), side, side, 0.1);
    const outDir = path.join(work, `restored-${model}-${side}`);
    const r = await timed(async (i) => {
      await rm(outDir, { recursive: true, force: true });
      return engine.restore({ model, inputs: [input], outputDir: outDir, seed: i });
    });
    const row = {
      model,
      side,
      seconds: r.seconds,
      megapixelsPerSecond: (side * side) / 1e6 / r.seconds,
      status: r.last.items[0]?.status,
    };
    results.restore.push(row);
    console.log(
      `restore ${model} ${side}×${side}: ${row.seconds.toFixed(2)} s (${row.megapixelsPerSecond.toFixed(3)} MP/s)`,
    );
  }
}
if (results.restore.length === 0)
  console.log('restore: skipped (no restore-* pack is bundled yet)');

await engine.close();
await rm(work, { recursive: true, force: true });
const dir = path.join(root, 'bench/results');
await mkdir(dir, { recursive: true });
await writeFile(path.join(dir, 'summary.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log(`wrote ${path.relative(root, path.join(dir, 'summary.json'))}`);
