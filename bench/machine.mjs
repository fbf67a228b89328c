// The machine a benchmark ran on, as every bench/results/*.json records it.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const round2 = (v) => Number(v.toFixed(2));

/** One-minute, five-minute and fifteen-minute load averages, rounded. */
export const loadAverage = () => os.loadavg().map(round2);

/** CPUs, memory, platform, Node and onnxruntime-node versions, and the load at the start. */
export async function machineInfo(root) {
  const ort = JSON.parse(
    await readFile(path.join(root, 'node_modules/onnxruntime-node/package.json'), 'utf8'),
  );
  return {
    cpus: os.cpus().length,
    model: os.cpus()[0]?.model,
    memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    platform: `${process.platform}-${process.arch}`,
    node: process.version,
    onnxruntimeNode: ort.version,
    loadAverageAtStart: loadAverage(),
  };
}
