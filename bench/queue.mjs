// `npm run bench:queue`: what the queue path costs (issue 13, acceptance 5), measured here on a
// Redis started for the run (Debian's redis-server, 127.0.0.1, free port, no persistence).
//
// 1. Overhead per file: the same folder restored by a local batch (engine.restore, in this
//    process, one thread) and through the queue (the producer in this process, one warm
//    `retrace worker --threads 1` process), each run into a new output folder. Overhead per
//    file = (queue wall − local wall) / files; the figure is the median over runs, local and
//    queue runs taken in turns. The fixture restoration pack on 64² photos keeps the network
//    to a fraction of a millisecond, so what is left is the queue's own cost (enqueue, fetch,
//    lock, completion, events, and a worker not overlapping decode/encode with the network as a
//    local batch does). Goal ≤ 20 ms.
// 2. Throughput with 1 and 2 worker processes (each --threads 1) on a folder of 128² photos
//    through restore-denoise (the fixture pack where it is missing): files per second, medians
//    over runs, and the ratio. On a 2-core machine 2 workers can at best double it; what this
//    machine allows at the time is measured beside it: the same files by one local `retrace
//    restore` process, and split between two run at once.
// Writes bench/results/queue.json (atomically) and prints the medians and ratios.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(root, 'dist/electron', p);
const { Engine } = await import(dist('engine/engine.js'));
const { restoreWithQueue } = await import(dist('engine/queue/producer.js'));
const { parseRedisUrl } = await import(dist('engine/queue/redis.js'));

const envInt = (name, fallback) => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`${name}: expected a whole number ≥ 1, got '${raw}'`);
    process.exit(2);
  }
  return value;
};
const runs = envInt('RETRACE_BENCH_QUEUE_RUNS', 7);
const overheadFiles = envInt('RETRACE_BENCH_QUEUE_FILES', 40);
const throughputFiles = envInt('RETRACE_BENCH_QUEUE_THROUGHPUT_FILES', 24);
const throughputRuns = envInt('RETRACE_BENCH_QUEUE_THROUGHPUT_RUNS', 3);

if (spawnSync('redis-server', ['--version']).status !== 0) {
  console.error('bench:queue needs redis-server (Debian: apt-get install redis-server)');
  process.exit(1);
}
const redisVersion = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.match(
  /v=(\S+)/,
)?.[1];

const work = await mkdtemp(path.join(os.tmpdir(), 'retrace-bench-queue-'));
const children = new Set();
const cleanup = async () => {
  for (const c of children) c.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
};
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (v, digits = 3) => Number(v.toFixed(digits));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const dir = path.join(work, 'redis');
  await mkdir(dir, { recursive: true });
  const child = spawn('redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
  ]);
  children.add(child);
  await new Promise((resolve, reject) => {
    let log = '';
    child.stdout.on('data', (d) => {
      log += d;
      if (/Ready to accept connections/.test(log)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`redis-server exited ${code}: ${log}`)));
  });
  return { port, url: `redis://127.0.0.1:${port}/0`, child };
}

function startWorker(url, queueName) {
  const child = spawn(process.execPath, [
    path.join(root, 'bin/retrace.js'),
    '--threads',
    '1',
    '--quiet',
    '--user-dir',
    path.join(work, 'u'),
    'worker',
    '--queue',
    url,
    '--queue-name',
    queueName,
  ]);
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (code !== 0 && signal !== 'SIGTERM')
      console.error(`worker exited ${code ?? signal}: ${stderr}`);
  });
  return child;
}

async function stopWorker(child) {
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

async function photos(dir, count, side, prefix = 'p') {
  await mkdir(dir, { recursive: true });
  const data = Buffer.alloc(side * side * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 7)) % 253;
  const first = path.join(dir, `${prefix}000.png`);
  await sharp(data, { raw: { width: side, height: side, channels: 3 } })
    .png()
    .toFile(first);
  for (let i = 1; i < count; i++)
    await copyFile(first, path.join(dir, `${prefix}${String(i).padStart(3, '0')}.png`));
}

const engine = new Engine({
  userDir: path.join(work, 'u'),
  runtime: { provider: 'cpu', threads: 1 },
});
const redis = await startRedis();
const target = parseRedisUrl(redis.url);
let outIndex = 0;
const nextOut = () => path.join(work, `out-${outIndex++}`);

async function local(model, folder) {
  const t = performance.now();
  const r = await engine.restore({ model, inputs: [folder], outputDir: nextOut() });
  const wall = (performance.now() - t) / 1000;
  if (r.items.some((i) => i.status !== 'ok')) throw new Error('local batch: a file failed');
  return wall;
}

async function queued(model, folder, queueName) {
  const t = performance.now();
  const r = await restoreWithQueue(
    engine,
    { model, inputs: [folder], outputDir: nextOut() },
    { target, queueName, attempts: 3, redisWaitMs: 10_000, reconcileMs: 1000 },
  );
  const wall = (performance.now() - t) / 1000;
  if (r.items.some((i) => i.status !== 'ok')) throw new Error('queue batch: a file failed');
  return wall;
}

const result = {
  machine: { cpus: os.cpus().length, loadavg: os.loadavg().map((v) => round(v, 2)) },
  redis: redisVersion,
  node: process.version,
};
try {
  // 1. Overhead per file.
  const fixture = path.join(root, 'test/fixtures/restore-pack');
  const small = path.join(work, 'small');
  await photos(small, overheadFiles, 64);
  const w1 = startWorker(redis.url, 'overhead');
  await local(fixture, small); // warm-up: this process's session
  await queued(fixture, small, 'overhead'); // warm-up: the worker's session
  const localWalls = [];
  const queueWalls = [];
  const perFile = [];
  for (let i = 0; i < runs; i++) {
    const first = i % 2 === 0;
    const a = first ? await local(fixture, small) : undefined;
    const q = await queued(fixture, small, 'overhead');
    const l = a ?? (await local(fixture, small));
    localWalls.push(l);
    queueWalls.push(q);
    perFile.push(((q - l) / overheadFiles) * 1000);
  }
  await stopWorker(w1);
  result.overhead = {
    pack: 'test/fixtures/restore-pack',
    files: overheadFiles,
    side: 64,
    runs,
    localMsPerFile: round((median(localWalls) / overheadFiles) * 1000, 2),
    queueMsPerFile: round((median(queueWalls) / overheadFiles) * 1000, 2),
    overheadMsPerFile: round(median(perFile), 2),
    overheadMsPerFileRuns: perFile.map((v) => round(v, 2)),
    goalMs: 20,
  };
  console.log(
    `queue overhead per file (${overheadFiles} × 64², fixture pack, ${runs} runs): local ${result.overhead.localMsPerFile} ms, ` +
      `queue ${result.overhead.queueMsPerFile} ms → overhead ${result.overhead.overheadMsPerFile} ms median ` +
      `(runs ${result.overhead.overheadMsPerFileRuns.join(', ')}; goal ≤ 20 ms)`,
  );

  // 2. Throughput with 1 and 2 workers.
  const denoise = path.join(root, 'models/packs/restore-denoise');
  const pack = existsSync(path.join(denoise, 'pack.json')) ? 'restore-denoise' : fixture;
  const big = path.join(work, 'big');
  await photos(big, throughputFiles, 128);
  const a = startWorker(redis.url, 'throughput');
  await local(pack, big); // warm-up here
  await queued(pack, big, 'throughput'); // warm-up, worker A
  const one = [];
  const localFps = [];
  for (let i = 0; i < throughputRuns; i++) {
    localFps.push(throughputFiles / (await local(pack, big)));
    one.push(throughputFiles / (await queued(pack, big, 'throughput')));
  }
  // The machine's own ceiling for two processes: the same files by one `retrace restore`
  // process, and split between two run at once (process start-up included in both).
  const halves = [path.join(work, 'half-a'), path.join(work, 'half-b')];
  await photos(halves[0], Math.ceil(throughputFiles / 2), 128, 'a');
  await photos(halves[1], Math.floor(throughputFiles / 2), 128, 'b');
  const cli = (folders) =>
    Promise.all(
      folders.map(
        (f) =>
          new Promise((resolve, reject) => {
            const c = spawn(process.execPath, [
              path.join(root, 'bin/retrace.js'),
              '--threads',
              '1',
              '--quiet',
              '--user-dir',
              path.join(work, 'u'),
              'restore',
              ...(Array.isArray(f) ? f : [f]),
              '--model',
              pack,
              '--out',
              nextOut(),
            ]);
            let stderr = '';
            c.stderr.on('data', (d) => (stderr += d));
            c.on('exit', (code) =>
              code === 0 ? resolve() : reject(new Error(`restore exited ${code}: ${stderr}`)),
            );
          }),
      ),
    );
  const oneProcess = [];
  const twoProcesses = [];
  for (let i = 0; i < throughputRuns; i++) {
    let t = performance.now();
    await cli([halves]);
    oneProcess.push(throughputFiles / ((performance.now() - t) / 1000));
    t = performance.now();
    await cli(halves);
    twoProcesses.push(throughputFiles / ((performance.now() - t) / 1000));
  }
  const b = startWorker(redis.url, 'throughput');
  await queued(pack, big, 'throughput'); // warm-up, both
  const two = [];
  for (let i = 0; i < throughputRuns; i++)
    two.push(throughputFiles / (await queued(pack, big, 'throughput')));
  await Promise.all([stopWorker(a), stopWorker(b)]);
  result.throughput = {
    pack: pack === fixture ? 'test/fixtures/restore-pack' : pack,
    files: throughputFiles,
    side: 128,
    runs: throughputRuns,
    localFilesPerSecond: round(median(localFps)),
    oneWorkerFilesPerSecond: round(median(one)),
    twoWorkersFilesPerSecond: round(median(two)),
    twoOverOne: round(median(two) / median(one)),
    oneWorkerOverLocal: round(median(one) / median(localFps)),
    machine: {
      oneProcessFilesPerSecond: round(median(oneProcess)),
      twoProcessesFilesPerSecond: round(median(twoProcesses)),
      twoOverOne: round(median(twoProcesses) / median(oneProcess)),
    },
  };
  const t = result.throughput;
  console.log(
    `throughput (${throughputFiles} × 128², ${t.pack}, ${throughputRuns} runs, workers --threads 1): local ${t.localFilesPerSecond} files/s, ` +
      `1 worker ${t.oneWorkerFilesPerSecond} files/s (×${t.oneWorkerOverLocal} of local), 2 workers ${t.twoWorkersFilesPerSecond} files/s → 2 ÷ 1 = ×${t.twoOverOne}; ` +
      `the machine's own 2 ÷ 1 (two local restore processes at once against one) ×${t.machine.twoOverOne}`,
  );
  result.machine.loadavgAfter = os.loadavg().map((v) => round(v, 2));
  const out = path.join(root, 'bench/results/queue.json');
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(`${out}.tmp`, JSON.stringify(result, null, 2) + '\n');
  await rename(`${out}.tmp`, out);
  console.log(`wrote ${path.relative(root, out)}`);
} finally {
  await engine.close();
  await cleanup();
}
