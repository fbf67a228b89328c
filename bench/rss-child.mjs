// Child process of `npm run bench`: restores one photo with tiling and reports its own peak RSS
// and the tile plan it used (TILE left out or empty: the memory budget's plan).
// Runs alone so that the figure is this restore's memory, not the bench's (which holds other
// models and buffers). Prints one JSON line on stdout.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [pack, input, outputDir, tile, threads] = process.argv.slice(2);
if (!pack || !input || !outputDir) {
  console.error('usage: node bench/rss-child.mjs PACK INPUT OUTPUT_DIR [TILE] [THREADS]');
  process.exit(2);
}
const { Engine } = await import(path.join(root, 'dist/electron/engine/engine.js'));
const engine = new Engine({
  userDir: path.join(outputDir, 'user'),
  runtime: { provider: 'cpu', threads: Number(threads ?? 0) },
});
const model = await engine.model(pack);
await model.warm();
const { restoreTilePlan } = await import(
  path.join(root, 'dist/electron/engine/pipelines/restore.js')
);
const { default: sharp } = await import('sharp');
const header = await sharp(input).metadata();
const plan = restoreTilePlan(
  model,
  header.width,
  header.height,
  tile ? { tile: Number(tile) } : {},
);
// RSS before the photo: Node, sharp, onnxruntime and the session, for the table.
const baselineMiB = process.memoryUsage().rss / 2 ** 20;
const started = performance.now();
const result = await engine.restore({
  model: pack,
  inputs: [input],
  outputDir,
  ...(tile ? { tile: Number(tile) } : {}),
});
const seconds = (performance.now() - started) / 1000;
const networkCalls = model.networkCalls();
await engine.close();
const item = result.items[0];
// maxRSS is in KiB on Linux and macOS (libuv's ru_maxrss).
const peakMiB = process.resourceUsage().maxRSS / 1024;
console.log(
  JSON.stringify({
    peakRssMiB: peakMiB,
    baselineRssMiB: baselineMiB,
    seconds,
    status: item?.status,
    error: item?.error,
    networkCalls,
    plan,
  }),
);
