// `npm run bench`: the engine's figures that issue 2 (acceptance 6) and the README quote, measured
// on this machine. Every figure is a median of RETRACE_BENCH_REPEATS runs (default 3) taken in
// one process; a missing pack, fixture or Python environment skips its row with the reason, it
// never stops the bench. Prints a table and writes bench/results/summary.json.
// What each figure means and how it is measured: bench/README.md.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { loadAverage, machineInfo } from './machine.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Engine } = await import(path.join(root, 'dist/electron/engine/engine.js'));

const envInt = (name, fallback) => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    console.error(`${name}: expected a whole number ≥ 0, got '${raw}'`);
    process.exit(2);
  }
  return value;
};
const repeats = Math.max(1, envInt('RETRACE_BENCH_REPEATS', 3));
// 0 = onnxruntime's default (one thread per core): what a user of the app gets.
const threads = envInt('RETRACE_BENCH_THREADS', 0);
// The comparisons with Python run every tool on the same explicit thread count. One by default:
// on a shared machine, multi-threaded OpenMP (PyTorch) and spinning onnxruntime pools measure
// the neighbours' load more than the code.
const compareThreads = Math.max(1, envInt('RETRACE_BENCH_COMPARE_THREADS', 1));
// The overhead figures are a few per cent of sub-second runs: more runs than the default median.
const overheadRuns = Math.max(repeats, 9);
const restoreCount = Math.max(2, envInt('RETRACE_BENCH_RESTORE_N', 12));
const skip24 = process.env.RETRACE_BENCH_24MP === '0';
const python =
  process.env.RETRACE_BENCH_PYTHON ?? path.join(root, 'models/factory/.venv/bin/python');

const work = await mkdtemp(path.join(os.tmpdir(), 'retrace-bench-'));
const engine = new Engine({
  userDir: path.join(work, 'user'),
  runtime: { provider: 'cpu', threads },
});
const compareEngine = new Engine({
  userDir: path.join(work, 'user-compare'),
  runtime: { provider: 'cpu', threads: compareThreads },
});
const benchStarted = performance.now();

const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (v, digits = 3) => (v === null || v === undefined ? v : Number(v.toFixed(digits)));

/**
 * Runs `fn` `repeats` times after `warmup` untimed runs; wall seconds and, when a model is given,
 * the seconds spent inside onnxruntime's run during each call.
 */
async function timed(fn, { model, warmup = 0, times = repeats } = {}) {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const runs = [];
  const network = [];
  // The pipeline's own `seconds` (engine results carry it): the job without reading/writing files.
  const pipeline = [];
  let last;
  for (let i = 0; i < times; i++) {
    const net0 = model?.networkSeconds() ?? 0;
    const t = performance.now();
    last = await fn(i);
    runs.push((performance.now() - t) / 1000);
    network.push((model?.networkSeconds() ?? 0) - net0);
    if (typeof last?.seconds === 'number') pipeline.push(last.seconds);
  }
  return { seconds: median(runs), runs, network, networkSeconds: median(network), pipeline, last };
}

/** Median of per-run overheads, (wall − network) / wall in %. */
const overheadPct = (r) => median(r.runs.map((wall, i) => ((wall - r.network[i]) / wall) * 100));
/** The same for the pipeline alone (no file decode/encode/write), when the results said. */
const pipelineOverheadPct = (r) =>
  r.pipeline.length === r.runs.length
    ? median(r.pipeline.map((wall, i) => ((wall - r.network[i]) / wall) * 100))
    : null;

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

/** Runs a command; resolves with its stdout's last JSON line (or rejects with the reason). */
function runJson(command, args, timeoutSeconds) {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd: root, timeout: timeoutSeconds * 1000, maxBuffer: 16 * 2 ** 20 },
      (err, stdout, stderr) => {
        const line = stdout
          .split('\n')
          .reverse()
          .find((l) => l.trim().startsWith('{'));
        if (err) {
          const why = err.killed
            ? `timed out after ${timeoutSeconds} s`
            : (stderr.trim().split('\n').pop() ?? err.message);
          reject(new Error(`${path.basename(command)} ${args[0] ?? ''}: ${why}`));
        } else if (!line) {
          reject(new Error(`${path.basename(command)} ${args[0] ?? ''}: printed no JSON`));
        } else resolve(JSON.parse(line));
      },
    );
  });
}

const packs = (await engine.listPacks()).filter((p) => p.ok);
const has = (id) => packs.some((p) => p.id === id);
const tinySd = path.join(root, 'test/fixtures/tiny-sd');

const summary = {
  engineOverheadPct: null,
  bdiaVsDdimStepRatio: null,
  restoreThroughputEfficiency: null,
  peakRssMiB24MP: null,
  restoreMegapixelsPerSecond24MP: null,
  editPeakRssMiB24MP: null,
  editCompositeSeconds24MP: null,
  speedVsDiffusersOnnx: null,
  speedVsPytorch: null,
  queueOverheadMsPerFile: null,
  goals: {
    engineOverheadPct: '<= 3',
    bdiaVsDdimStepRatio: '<= 1.03',
    restoreThroughputEfficiency: '>= 0.9',
    peakRssMiB24MP: '<= 1536',
    restoreMegapixelsPerSecond24MP: '>= 0.04',
    editPeakRssMiB24MP: '<= 1536',
    editCompositeSeconds24MP: '<= 2',
    speedVsDiffusersOnnx: '> 1 means Retrace is faster',
    speedVsPytorch: '> 1 means Retrace is faster',
    queueOverheadMsPerFile: '<= 20',
  },
  details: {},
  skipped: {},
  machine: await machineInfo(root),
  repeats,
  threads: threads === 0 ? 'onnxruntime default (one per core)' : threads,
  compareThreads,
  date: new Date().toISOString(),
};
const table = [];

// RETRACE_BENCH_ONLY="name,name": run only the sections whose names start with these (for
// working on one figure); such a partial run prints its figures but does not write summary.json.
const only = (process.env.RETRACE_BENCH_ONLY ?? '')
  .split(',')
  .map((n) => n.trim())
  .filter(Boolean);

/** Runs one section; any failure becomes a skipped row with its reason. */
async function section(name, fn, figure) {
  if (only.length && !only.some((prefix) => name.startsWith(prefix))) return;
  const t = performance.now();
  try {
    await fn();
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    summary.skipped[name] = reason;
    // A headline figure that could not be measured says why, in place of its value.
    if (figure) summary[figure] = `skipped: ${reason}`;
    console.log(`${name}: skipped (${reason})`);
  }
  console.log(`  [${name}: ${((performance.now() - t) / 1000).toFixed(1)} s]`);
}

function requirePack(id) {
  if (!has(id)) throw new Error(`pack ${id} is not installed (models/packs/${id})`);
}
function requirePath(file, what) {
  if (!existsSync(file)) throw new Error(`${what} is missing (${path.relative(root, file)})`);
}

const overhead = {};

// 1. Engine overhead of generate on shapes-base: wall time of the engine call (prompt encoding,
// sampling, decoding, PNG write) minus the time inside onnxruntime's run.
await section('overhead generate', async () => {
  requirePack('shapes-base');
  const model = await engine.model('shapes-base');
  await model.warm();
  const out = { dir: path.join(work, 'gen-overhead') };
  const r = await timed(
    (i) =>
      engine.generate(
        {
          model: 'shapes-base',
          prompt: 'a red circle',
          steps: 20,
          seed: 100 + Math.abs(i),
          timeShift: null,
        },
        out,
      ),
    { model, warmup: 1, times: overheadRuns },
  );
  overhead.generate = {
    pct: pipelineOverheadPct(r),
    endToEndPct: overheadPct(r),
    seconds: r.seconds,
    networkSeconds: r.networkSeconds,
    nfe: r.last.nfe,
  };
  console.log(
    `overhead generate shapes-base (20 steps): pipeline ${overhead.generate.pct.toFixed(2)} % outside session.run (engine call with the PNG written: wall ${r.seconds.toFixed(3)} s, in session.run ${r.networkSeconds.toFixed(3)} s → ${overhead.generate.endToEndPct.toFixed(2)} %)`,
  );
});

// 2. Exact inversion against the naive DDIM baseline; the BDIA round trip on shapes-base also
// gives the roundtrip overhead.
const photo = await syntheticPhoto(path.join(work, 'photo.png'), 256, 256);
const textModels = [
  ...(has('shapes-base') ? ['shapes-base'] : []),
  ...(existsSync(tinySd) ? [tinySd] : []),
];
summary.details.inversion = [];
for (const model of textModels) {
  await section(`inversion ${path.basename(model)}`, async () => {
    const m = await engine.model(model);
    await m.warm();
    const params = {
      model,
      image: photo,
      prompt: 'a red circle',
      steps: 50,
      strength: 0.8,
      gamma: 0.94,
      guidance: 3,
    };
    const bdia = await timed(() => engine.roundtrip({ ...params, method: 'bdia' }), {
      model: m,
      warmup: 1,
      times: overheadRuns,
    });
    const naive = await timed(() => engine.roundtrip({ ...params, method: 'ddim-inversion' }), {
      model: m,
    });
    const pick = (r) => ({
      latentMaxAbsError: r.last.latentMaxAbsError,
      pixelMaxAbsError: r.last.pixelMaxAbsError,
      nfe: r.last.nfe,
      seconds: round(r.seconds),
    });
    const row = {
      model: path.basename(model),
      bdia: pick(bdia),
      naive: pick(naive),
      timeRatio: round(bdia.seconds / naive.seconds),
    };
    summary.details.inversion.push(row);
    if (model === 'shapes-base') {
      overhead.roundtrip = {
        pct: pipelineOverheadPct(bdia),
        endToEndPct: overheadPct(bdia),
        seconds: bdia.seconds,
        networkSeconds: bdia.networkSeconds,
        nfe: bdia.last.nfe,
      };
    }
    console.log(
      `inversion ${row.model}: BDIA latent ${row.bdia.latentMaxAbsError.toExponential(2)} (${row.bdia.nfe} NFE, ${row.bdia.seconds.toFixed(2)} s) | ` +
        `naive DDIM latent ${row.naive.latentMaxAbsError.toExponential(2)} (${row.naive.nfe} NFE, ${row.naive.seconds.toFixed(2)} s) | time ratio ${row.timeRatio.toFixed(2)}`,
    );
  });
}
if (overhead.generate || overhead.roundtrip) {
  summary.engineOverheadPct = {
    generate: round(overhead.generate?.pct ?? null, 2),
    roundtrip: round(overhead.roundtrip?.pct ?? null, 2),
  };
  summary.details.engineOverheadPct = {
    pack: 'shapes-base',
    generate: overhead.generate && { ...overhead.generate, steps: 20, count: 1 },
    roundtrip: overhead.roundtrip && {
      ...overhead.roundtrip,
      steps: 50,
      strength: 0.8,
      method: 'bdia',
    },
  };
}

// 3. BDIA against DDIM: seconds per step of the sampling loop only (between the first and the
// last network call), same steps, seeds and batch; runs interleaved so load drifts hit both.
await section(
  'bdia vs ddim',
  async () => {
    requirePack('shapes-base');
    const steps = 20;
    const perStep = { ddim: [], bdia: [] };
    // Seconds per step outside session.run: the only part the two samplers can differ in, since
    // both make the same calls with the same shapes.
    const offNetwork = { ddim: [], bdia: [] };
    const model = await engine.model('shapes-base');
    const out = { dir: path.join(work, 'gen-bdia') };
    const loopSeconds = async (sampler) => {
      const marks = [];
      const nets = [];
      await engine.generate(
        {
          model: 'shapes-base',
          prompt: 'a red circle left of a blue square',
          steps,
          seed: 7,
          count: 4,
          sampler,
          timeShift: null,
        },
        out,
        {
          onProgress: (e) => {
            if (e.phase !== 'sampling') return;
            marks.push(performance.now());
            nets.push(model.networkSeconds());
          },
        },
      );
      if (marks.length < 2) throw new Error(`${sampler}: the loop reported ${marks.length} steps`);
      const step = (marks.at(-1) - marks[0]) / 1000 / (marks.length - 1);
      offNetwork[sampler].push(step - (nets.at(-1) - nets[0]) / (marks.length - 1));
      return step;
    };
    await loopSeconds('ddim'); // warm-up
    // Pairs run back to back, order alternating; the median of the pairs' ratios cancels the slow
    // drift of a shared machine's load better than a ratio of two medians.
    const times = Math.max(repeats, 15);
    const ratios = [];
    for (let i = 0; i < times; i++) {
      for (const sampler of i % 2 ? ['bdia', 'ddim'] : ['ddim', 'bdia']) {
        perStep[sampler].push(await loopSeconds(sampler));
      }
      ratios.push(perStep.bdia[i] / perStep.ddim[i]);
    }
    const ratio = median(ratios);
    summary.bdiaVsDdimStepRatio = round(ratio);
    summary.details.bdiaVsDdimStepRatio = {
      pack: 'shapes-base',
      steps,
      count: 4,
      ddimSecondsPerStep: round(median(perStep.ddim), 5),
      bdiaSecondsPerStep: round(median(perStep.bdia), 5),
      ddimOffNetworkMsPerStep: round(median(offNetwork.ddim) * 1000, 3),
      bdiaOffNetworkMsPerStep: round(median(offNetwork.bdia) * 1000, 3),
      // The ratio with the network's own run-to-run noise taken out: equal network time plus
      // each sampler's measured off-network time.
      ratioWithoutNetworkNoise: round(
        (median(perStep.ddim) - median(offNetwork.ddim) + median(offNetwork.bdia)) /
          median(perStep.ddim),
        4,
      ),
      pairedRatios: ratios.map((r) => round(r, 4)),
      pairs: times,
    };
    console.log(
      `BDIA vs DDIM (shapes-base, ${steps} steps, 4 images): ${(median(perStep.bdia) * 1000).toFixed(1)} vs ${(median(perStep.ddim) * 1000).toFixed(1)} ms/step → ratio ${ratio.toFixed(3)} (off-network ${(median(offNetwork.bdia) * 1000).toFixed(2)} vs ${(median(offNetwork.ddim) * 1000).toFixed(2)} ms/step: ${summary.details.bdiaVsDdimStepRatio.ratioWithoutNetworkNoise} without the network's noise)`,
    );
  },
  'bdiaVsDdimStepRatio',
);

// 4. Time-Shift costs no network calls: wall time against plain DDIM, same seeds.
summary.details.timeShift = [];
for (const model of textModels) {
  await section(`time-shift ${path.basename(model)}`, async () => {
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
      ddimSeconds: round(ddim.seconds),
      timeShiftSeconds: round(ts.seconds),
      ratio: round(ts.seconds / ddim.seconds),
      nfe: [ddim.last.nfe, ts.last.nfe],
    };
    summary.details.timeShift.push(row);
    console.log(
      `time-shift ${row.model}: DDIM ${row.ddimSeconds.toFixed(2)} s, Time-Shift ${row.timeShiftSeconds.toFixed(2)} s (ratio ${row.ratio.toFixed(3)}), NFE ${row.nfe.join(' vs ')}`,
    );
  });
}

// 5. Batch restoration throughput against the network-bound rate: N equal 128×128 photos in a
// folder through engine.restore (decode/encode should overlap inference).
await section(
  'restore throughput',
  async () => {
    requirePack('restore-denoise');
    const side = 128;
    const folder = path.join(work, 'restore-in');
    await mkdir(folder, { recursive: true });
    const first = await syntheticPhoto(path.join(folder, 'photo-00.png'), side, side, 0.1);
    for (let i = 1; i < restoreCount; i++) {
      await copyFile(first, path.join(folder, `photo-${String(i).padStart(2, '0')}.png`));
    }
    const model = await engine.model('restore-denoise');
    await model.warm();
    await engine.restore({
      model: 'restore-denoise',
      inputs: [first],
      outputDir: path.join(work, 'restore-warm'),
    });
    // Each run: the whole folder through engine.restore (decode, 5 network calls, encode, atomic
    // write, report). Its efficiency is (N / wall) ÷ (N / seconds inside session.run), i.e. the
    // share of the run's wall time spent in the network; the figure is the median over runs, so
    // each run's network speed is set against that same run's wall time.
    const r = await timed(
      async (i) => {
        const outputDir = path.join(work, `restore-out-${i}`);
        const result = await engine.restore({
          model: 'restore-denoise',
          inputs: [folder],
          outputDir,
        });
        const failed = result.items.filter((item) => item.status !== 'ok');
        if (failed.length) throw new Error(`restore failed: ${failed[0].error}`);
        return result;
      },
      { model, times: Math.max(repeats, 5) },
    );
    const perRun = r.runs.map((wall, i) => r.network[i] / wall);
    const efficiency = median(perRun);
    const imagesPerSecond = restoreCount / r.seconds;
    const networkBound = median(r.network.map((net) => restoreCount / net));
    summary.restoreThroughputEfficiency = round(efficiency);
    summary.details.restoreThroughputEfficiency = {
      pack: 'restore-denoise',
      photos: restoreCount,
      side,
      runs: r.runs.length,
      batchSeconds: round(r.seconds),
      imagesPerSecond: round(imagesPerSecond),
      networkBoundImagesPerSecond: round(networkBound),
      perRunEfficiency: perRun.map((e) => round(e)),
      nfePerImage: 5,
    };
    console.log(
      `restore throughput (restore-denoise, ${restoreCount} × ${side}², ${r.runs.length} runs): ${imagesPerSecond.toFixed(3)} img/s, network-bound ${networkBound.toFixed(3)} img/s → efficiency ${efficiency.toFixed(3)} (runs ${perRun.map((e) => e.toFixed(3)).join(', ')})`,
    );
  },
  'restoreThroughputEfficiency',
);

// 6. Single-photo restoration speed: 256² in one tile, 512² tiled.
summary.details.restore = [];
for (const model of ['restore-denoise', 'restore-lowlight']) {
  await section(`restore ${model}`, async () => {
    requirePack(model);
    // 512² (nine 256² tiles) once: the two packs share one architecture, and it is the slow row.
    for (const side of model === 'restore-denoise' ? [256, 512] : [256]) {
      const input = await syntheticPhoto(path.join(work, `noisy-${side}.png`), side, side, 0.1);
      const outDir = path.join(work, `restored-${model}-${side}`);
      const r = await timed(async (i) => {
        await rm(outDir, { recursive: true, force: true });
        return engine.restore({ model, inputs: [input], outputDir: outDir, seed: i });
      });
      const row = {
        model,
        side,
        seconds: round(r.seconds),
        megapixelsPerSecond: round((side * side) / 1e6 / r.seconds, 4),
        status: r.last.items[0]?.status,
      };
      summary.details.restore.push(row);
      console.log(
        `restore ${model} ${side}×${side}: ${row.seconds.toFixed(2)} s (${row.megapixelsPerSecond.toFixed(3)} MP/s)`,
      );
    }
  });
}

// 7. Against what a user would run instead, same ONNX files (or the same network) and threads.
// The Python tool stays loaded in a child process (scripts/bench/serve.py) and the two run in
// turns, one run each, order alternating; the figure is the median of the pairs' time ratios, so
// a shared machine's changing load falls on both sides alike.
const pythonReady = () => {
  if (!existsSync(python))
    throw new Error(`no Python environment at ${python} (set RETRACE_BENCH_PYTHON)`);
};
const pyOut = path.join(work, 'python-out');
await mkdir(pyOut, { recursive: true });
const comparePairs = Math.max(repeats, 9);

/** A served Python tool: `header` is its first JSON line, `run(seed)` one timed run. */
async function startPythonTool(script, args, timeoutSeconds) {
  const child = spawn(python, [path.join(root, script), ...args, '--serve'], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const lines = createInterface({ input: child.stdout });
  const queue = [];
  const waiting = [];
  lines.on('line', (line) => {
    if (!line.trim().startsWith('{')) return;
    const next = waiting.shift();
    if (next) next.resolve(line);
    else queue.push(line);
  });
  const failed = (why) => {
    for (const w of waiting.splice(0)) w.reject(new Error(why));
  };
  child.on('exit', (code) =>
    failed(`${path.basename(script)} exited (${code}): ${stderr.trim().split('\n').pop() ?? ''}`),
  );
  const nextLine = () =>
    new Promise((resolve, reject) => {
      if (queue.length) return resolve(queue.shift());
      const timer = setTimeout(() => {
        child.kill();
        reject(new Error(`${path.basename(script)}: no answer in ${timeoutSeconds} s`));
      }, timeoutSeconds * 1000);
      waiting.push({
        resolve: (l) => (clearTimeout(timer), resolve(JSON.parse(l))),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  const header = await nextLine();
  if (header.skipped) {
    child.kill();
    throw new Error(header.skipped);
  }
  return {
    header,
    run: async (seed) => {
      child.stdin.write(`${seed}\n`);
      const answer = await nextLine();
      if (answer.error) throw new Error(`${path.basename(script)}: ${answer.error}`);
      return answer;
    },
    close: () => {
      child.stdin.end();
      child.kill();
    },
  };
}

/** Runs the Python tool and Retrace in turns; medians and the median of the paired ratios. */
async function pairedComparison(tool, retraceOnce, model) {
  const py = [];
  const pyNetwork = [];
  const ours = [];
  const oursNetwork = [];
  const ratios = [];
  await retraceOnce(0); // warm-up (the tool warmed itself up before it said it was ready)
  for (let i = 0; i < comparePairs; i++) {
    const seed = 2 + i;
    const runOurs = async () => {
      const net0 = model.networkSeconds();
      const t = performance.now();
      await retraceOnce(seed);
      ours.push((performance.now() - t) / 1000);
      oursNetwork.push(model.networkSeconds() - net0);
    };
    const runTool = async () => {
      const r = await tool.run(seed);
      py.push(r.seconds);
      if (typeof r.networkSeconds === 'number') pyNetwork.push(r.networkSeconds);
    };
    if (i % 2) {
      await runTool();
      await runOurs();
    } else {
      await runOurs();
      await runTool();
    }
    ratios.push(py[i] / ours[i]);
  }
  return {
    ratio: median(ratios),
    seconds: median(ours),
    networkSeconds: median(oursNetwork),
    toolSeconds: median(py),
    toolNetworkSeconds: pyNetwork.length ? median(pyNetwork) : null,
    pairedRatios: ratios.map((r) => round(r, 3)),
  };
}

/** Retrace's side: `engine.generate` on one pack, the tool's prompt and settings, PNG written. */
async function pairedGenerate(tool, modelId, outName, settings) {
  const model = await compareEngine.model(modelId);
  await model.warm();
  const out = { dir: path.join(work, outName) };
  const once = (seed) =>
    compareEngine.generate(
      {
        model: modelId,
        prompt: 'a red circle left of a blue square',
        ...settings,
        seed,
        timeShift: null,
      },
      out,
    );
  return pairedComparison(tool, once, model);
}

await section(
  'vs diffusers ONNX',
  async () => {
    pythonReady();
    requirePath(tinySd, 'the tiny SD fixture');
    const params = { steps: 20, guidance: 7.5, size: 64 };
    const tool = await startPythonTool(
      'scripts/bench/sd_onnx_pipeline.py',
      [
        '--model',
        tinySd,
        '--steps',
        String(params.steps),
        '--guidance',
        String(params.guidance),
        '--size',
        String(params.size),
        '--threads',
        String(compareThreads),
        '--out-dir',
        pyOut,
      ],
      300,
    );
    try {
      const r = await pairedGenerate(tool, tinySd, 'gen-sd', {
        steps: params.steps,
        guidance: params.guidance,
        width: params.size,
        height: params.size,
      });
      summary.speedVsDiffusersOnnx = round(r.ratio);
      summary.details.speedVsDiffusersOnnx = {
        model: 'test/fixtures/tiny-sd',
        ...params,
        sampler: 'DDIM (eta 0)',
        threads: compareThreads,
        retraceSeconds: round(r.seconds, 4),
        retraceNetworkSeconds: round(r.networkSeconds, 4),
        diffusersSeconds: round(r.toolSeconds, 4),
        diffusersNetworkSeconds: round(r.toolNetworkSeconds, 4),
        pairs: comparePairs,
        pairedRatios: r.pairedRatios,
        diffusers: tool.header.diffusers,
        onnxruntimePython: tool.header.onnxruntime,
      };
      console.log(
        `vs diffusers OnnxStableDiffusionPipeline (tiny-sd, ${params.steps} DDIM steps, ${params.size}², ${compareThreads} thread): Retrace ${r.seconds.toFixed(3)} s, diffusers ${r.toolSeconds.toFixed(3)} s → ×${r.ratio.toFixed(2)} (median of ${comparePairs} paired runs)`,
      );
    } finally {
      tool.close();
    }
  },
  'speedVsDiffusersOnnx',
);

await section(
  'vs PyTorch',
  async () => {
    pythonReady();
    requirePack('shapes-base');
    const params = { steps: 20, guidance: 5 };
    const tool = await startPythonTool(
      'scripts/bench/shapes_torch.py',
      [
        '--onnx',
        path.join(root, 'models/packs/shapes-base/unet.onnx'),
        '--steps',
        String(params.steps),
        '--guidance',
        String(params.guidance),
        '--threads',
        String(compareThreads),
        '--out-dir',
        pyOut,
      ],
      300,
    );
    try {
      const r = await pairedGenerate(tool, 'shapes-base', 'gen-torch', params);
      summary.speedVsPytorch = round(r.ratio);
      summary.details.speedVsPytorch = {
        pack: 'shapes-base',
        reference:
          'models/factory/.cache/shapes/base/model.pt with shapes.model.ddim_sample (float64 DDIM) + VAE decode',
        ...params,
        threads: compareThreads,
        retraceSeconds: round(r.seconds, 4),
        retraceNetworkSeconds: round(r.networkSeconds, 4),
        pytorchSeconds: round(r.toolSeconds, 4),
        pairs: comparePairs,
        pairedRatios: r.pairedRatios,
        // Same network: the pack's unet.onnx against the checkpoint on one random batch.
        onnxUnetMaxAbsDiff: tool.header.onnxUnetMaxAbsDiff,
        torch: tool.header.torch,
      };
      console.log(
        `vs PyTorch (shapes-base, ${params.steps} DDIM steps, ${compareThreads} thread): Retrace ${r.seconds.toFixed(3)} s, PyTorch ${r.toolSeconds.toFixed(3)} s → ×${r.ratio.toFixed(2)} (median of ${comparePairs} paired runs)`,
      );
    } finally {
      tool.close();
    }
  },
  'speedVsPytorch',
);
await compareEngine.close();
await engine.close();

// 8. A 24-megapixel photo restored by the real packs (issue 15), each in a child process of its
// own (its own peak RSS): MP/s, the tile plan the memory budget chose and peak RSS; and, for
// restore-denoise, the same photo with the earlier fixed plan (square 256 tiles), as "before".
// One run each (they take minutes): RETRACE_BENCH_24MP=0 leaves them out.
summary.details.restore24MP = [];
await section(
  'restore 24 MP',
  async () => {
    if (skip24) throw new Error('RETRACE_BENCH_24MP=0');
    const input = path.join(work, 'photo-24mp.jpg');
    await sharp({
      create: {
        width: 6000,
        height: 4000,
        channels: 3,
        background: { r: 120, g: 100, b: 90 },
        noise: { type: 'gaussian', mean: 128, sigma: 30 },
      },
    })
      .jpeg({ quality: 90 })
      .toFile(input);
    const runs = [
      ['restore-denoise', ''],
      ['restore-lowlight', ''],
      ['restore-denoise', '256'],
    ];
    for (const [pack, tile] of runs) {
      requirePack(pack);
      const outDir = path.join(work, `restore-24mp-${pack}-${tile || 'plan'}`);
      const child = await runJson(
        process.execPath,
        [path.join(root, 'bench/rss-child.mjs'), pack, input, outDir, tile, String(threads)],
        1800,
      );
      await rm(outDir, { recursive: true, force: true });
      if (child.status !== 'ok') throw new Error(`the 24 MP restore failed: ${child.error}`);
      const row = {
        pack,
        plan: tile ? 'before: square 256 tiles' : 'memory budget (1.5 GiB)',
        width: 6000,
        height: 4000,
        seconds: round(child.seconds, 1),
        megapixelsPerSecond: round(24 / child.seconds, 4),
        tileWidth: child.plan.tileWidth,
        tileHeight: child.plan.tileHeight,
        overlap: child.plan.overlap,
        tiles: child.plan.tiles,
        computedRatio: round(child.plan.computedRatio, 3),
        networkCalls: child.networkCalls,
        peakRssMiB: round(child.peakRssMiB, 1),
        baselineRssMiB: round(child.baselineRssMiB, 1),
      };
      summary.details.restore24MP.push(row);
      console.log(
        `restore 24 MP (${pack}, ${row.plan}): ${row.seconds} s = ${row.megapixelsPerSecond} MP/s; ${row.tiles} tiles of ${row.tileWidth}×${row.tileHeight} (computes ×${row.computedRatio} the pixels); peak RSS ${row.peakRssMiB.toFixed(0)} MiB`,
      );
    }
    const planned = summary.details.restore24MP.filter((r) => !r.plan.startsWith('before'));
    summary.peakRssMiB24MP = Math.max(...planned.map((r) => r.peakRssMiB));
    summary.restoreMegapixelsPerSecond24MP = Math.min(...planned.map((r) => r.megapixelsPerSecond));
    const before = summary.details.restore24MP.find((r) => r.plan.startsWith('before'));
    const after = planned.find((r) => r.pack === 'restore-denoise');
    if (before && after) {
      summary.details.restore24MPSpeedup = round(before.seconds / after.seconds, 3);
    }
  },
  'peakRssMiB24MP',
);

// 24 MP masked edit (issue 10): the whole edit job's peak RSS in a process of its own, and the
// full-resolution composite O = S + M·up(Δ) alone (median of 3).
await section(
  'edit 24mp',
  async () => {
    if (skip24) throw new Error('RETRACE_BENCH_24MP=0');
    requirePath(tinySd, 'the tiny SD fixture');
    const input = path.join(work, 'edit-24mp.jpg');
    await sharp({
      create: {
        width: 6000,
        height: 4000,
        channels: 3,
        background: { r: 120, g: 100, b: 90 },
        noise: { type: 'gaussian', mean: 128, sigma: 30 },
      },
    })
      .jpeg({ quality: 90 })
      .toFile(input);
    const mask = path.join(work, 'edit-24mp-mask.png');
    await sharp({ create: { width: 6000, height: 4000, channels: 3, background: '#000' } })
      .composite([
        {
          input: {
            create: { width: 3000, height: 2000, channels: 3, background: '#fff' },
          },
          left: 1500,
          top: 1000,
        },
      ])
      .png()
      .toFile(mask);
    const child = await runJson(
      process.execPath,
      [
        path.join(root, 'bench/edit-child.mjs'),
        tinySd,
        input,
        mask,
        path.join(work, 'edit-24mp'),
        String(threads),
      ],
      600,
    );
    if (child.status !== 'ok') throw new Error(`the 24 MP edit failed: ${child.error}`);
    summary.editPeakRssMiB24MP = round(child.peakRssMiB, 1);
    summary.editCompositeSeconds24MP = round(child.compositeSeconds, 2);
    summary.details.edit24MP = {
      model:
        'test/fixtures/tiny-sd (tiny network: the memory and time measured are the edit’s own)',
      width: child.width,
      height: child.height,
      mask: 'a 3000×2000 rectangle (25 %), default feather',
      nfe: child.nfe,
      seconds: round(child.seconds, 2),
      phases: Object.fromEntries(Object.entries(child.phases).map(([k, v]) => [k, round(v, 2)])),
      baselineRssMiB: round(child.baselineRssMiB, 1),
      compositeRuns: child.compositeRuns.map((v) => round(v, 3)),
      compositeChange: '768×512 Δ upsampled to 6000×4000 (Lanczos), masked, added, 8-bit',
    };
    console.log(
      `24 MP edit (6000×4000, 25 % mask, tiny-sd): peak RSS ${child.peakRssMiB.toFixed(0)} MiB (engine loaded: ${child.baselineRssMiB.toFixed(0)} MiB), ${child.seconds.toFixed(1)} s; composite alone ${child.compositeSeconds.toFixed(2)} s (median of 3)`,
    );
  },
  'editPeakRssMiB24MP',
);

// 9a. The distributed restore's queue (issue 13): bench/queue.mjs (also `npm run bench:queue`)
// in a process of its own — overhead per file against a local batch, and files per second with
// 1 and 2 workers — read back from the bench/results/queue.json it writes.
await section('queue', async () => {
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    throw new Error('redis-server is not installed (Debian: apt-get install redis-server)');
  }
  await new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [path.join(root, 'bench/queue.mjs')],
      { cwd: root, timeout: 1200 * 1000, maxBuffer: 16 * 2 ** 20 },
      (err, stdout, stderr) => {
        process.stdout.write(stdout.replace(/^/gm, '  '));
        if (err)
          reject(new Error(`bench/queue.mjs: ${stderr.trim().split('\n').pop() ?? err.message}`));
        else resolve();
      },
    ),
  );
  const queue = JSON.parse(await readFile(path.join(root, 'bench/results/queue.json'), 'utf8'));
  summary.queueOverheadMsPerFile = queue.overhead.overheadMsPerFile;
  summary.details.queue = queue;
});

// 9. Providers (issue 16): generate on shapes-base with the CPU provider and with WebGPU over
// Mesa's llvmpipe (the throwaway prefix of scripts/providers/vulkan-prefix.sh), each in CLI
// processes of its own, as a user runs it: what `auto` passes over, and what it would have cost.
// Cold = one image in a fresh process (session creation and shader compilation included);
// per image = (5 images − 1 image) / 4 in fresh processes, the steady cost.
await section('providers cpu vs webgpu', async () => {
  const statusFile = path.join(root, '.cache/providers/status.json');
  requirePath(statusFile, 'the Vulkan prefix (npm run test:providers builds it)');
  const vk = JSON.parse(await readFile(statusFile, 'utf8'));
  if (!vk.ok) throw new Error(`no Vulkan prefix: ${vk.reason}`);
  requirePack('shapes-base');
  const env = {
    ...process.env,
    LD_LIBRARY_PATH: [vk.lib, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':'),
    VK_ICD_FILENAMES: vk.icd,
  };
  const run = (provider, count) =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      execFile(
        process.execPath,
        [
          path.join(root, 'bin/retrace.js'),
          '--quiet',
          '--provider',
          provider,
          'generate',
          '--model',
          'shapes-base',
          '--prompt',
          'a red circle left of a blue square',
          '--steps',
          '10',
          '--seed',
          '1',
          '--count',
          String(count),
          '--out',
          path.join(work, `providers-${provider}`),
          '--json',
        ],
        { env, maxBuffer: 1 << 20 },
        (err, stdout) => {
          if (err) return reject(err);
          const wall = (performance.now() - started) / 1000;
          const report = JSON.parse(stdout);
          resolve({ wall, seconds: report.seconds, used: report.runtime?.used ?? [] });
        },
      );
    });
  const plan = await new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [path.join(root, 'bin/retrace.js'), 'providers', '--json'],
      { env },
      (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout))),
    ),
  );
  const measure = async (provider) => {
    const one = [];
    const five = [];
    for (let i = 0; i < repeats; i++) {
      one.push(await run(provider, 1));
      five.push(await run(provider, 5));
    }
    const used = [...new Set([...one, ...five].flatMap((r) => r.used))];
    if (used.join() !== provider)
      throw new Error(`asked for ${provider}, ran on ${used.join(', ')}`);
    return {
      coldSeconds: round(median(one.map((r) => r.seconds)), 3),
      coldProcessSeconds: round(median(one.map((r) => r.wall)), 3),
      perImageSeconds: round(median(five.map((r, i) => (r.seconds - one[i].seconds) / 4)), 3),
    };
  };
  await rm(path.join(work, 'providers-cpu'), { recursive: true, force: true });
  const cpu = await measure('cpu');
  const webgpu = await measure('webgpu');
  summary.details.providers = {
    model: 'shapes-base, 10 DDIM steps, 64²',
    adapter: `llvmpipe (Mesa ${vk.mesa}), software`,
    autoChooses: plan.candidates,
    autoPassedOver: plan.passedOver,
    cpu,
    webgpu,
    webgpuOverCpuPerImage: round(webgpu.perImageSeconds / cpu.perImageSeconds, 2),
  };
  console.log(
    `providers: auto tries ${plan.candidates.join(' → ')}; per image CPU ${cpu.perImageSeconds} s, WebGPU (llvmpipe) ${webgpu.perImageSeconds} s (×${summary.details.providers.webgpuOverCpuPerImage}); cold CPU ${cpu.coldSeconds} s, WebGPU ${webgpu.coldSeconds} s`,
  );
});

await rm(work, { recursive: true, force: true });
summary.machine.loadAverageAtEnd = loadAverage();
summary.benchSeconds = round((performance.now() - benchStarted) / 1000, 1);

// The table: headline figures against their goals.
const fmt = (v, digits = 3) => (typeof v === 'number' ? v.toFixed(digits) : 'skipped');
const goalMet = (value, test) => (typeof value === 'number' ? (test(value) ? 'yes' : 'NO') : '-');
const o = summary.engineOverheadPct;
table.push(
  [
    'engine overhead, generate (%)',
    fmt(o?.generate, 2),
    '≤ 3',
    goalMet(o?.generate, (v) => v <= 3),
    `shapes-base, 20 steps (engine call + PNG write ${fmt(summary.details.engineOverheadPct?.generate?.endToEndPct, 2)} %)`,
  ],
  [
    'engine overhead, roundtrip (%)',
    fmt(o?.roundtrip, 2),
    '≤ 3',
    goalMet(o?.roundtrip, (v) => v <= 3),
    `shapes-base, BDIA, 50 steps × 0.8 (engine call + photo read ${fmt(summary.details.engineOverheadPct?.roundtrip?.endToEndPct, 2)} %)`,
  ],
  [
    'BDIA ÷ DDIM s/step',
    fmt(summary.bdiaVsDdimStepRatio),
    '≤ 1.03',
    goalMet(summary.bdiaVsDdimStepRatio, (v) => v <= 1.03),
    `shapes-base, 20 steps, 4 images (${fmt(summary.details.bdiaVsDdimStepRatio?.ratioWithoutNetworkNoise, 4)} without network noise)`,
  ],
  [
    'restore throughput efficiency',
    fmt(summary.restoreThroughputEfficiency),
    '≥ 0.9',
    goalMet(summary.restoreThroughputEfficiency, (v) => v >= 0.9),
    `restore-denoise, ${restoreCount} × 128²`,
  ],
  [
    'restore 24 MP (MP/s)',
    fmt(summary.restoreMegapixelsPerSecond24MP, 4),
    '≥ 0.04',
    goalMet(summary.restoreMegapixelsPerSecond24MP, (v) => v >= 0.04),
    `slower of restore-denoise/-lowlight, 6000×4000, budget plan (×${fmt(summary.details.restore24MPSpeedup, 2)} vs 256 tiles)`,
  ],
  [
    'peak RSS, 24 MP restore (MiB)',
    fmt(summary.peakRssMiB24MP, 0),
    '≤ 1536',
    goalMet(summary.peakRssMiB24MP, (v) => v <= 1536),
    'restore-denoise and -lowlight, budget plan (the larger)',
  ],
  [
    'peak RSS, 24 MP masked edit (MiB)',
    fmt(summary.editPeakRssMiB24MP, 0),
    '≤ 1536',
    goalMet(summary.editPeakRssMiB24MP, (v) => v <= 1536),
    'tiny-sd FIXTURE (the edit job’s own memory), 25 % mask',
  ],
  [
    'full-resolution composite, 24 MP (s)',
    fmt(summary.editCompositeSeconds24MP, 2),
    '≤ 2',
    goalMet(summary.editCompositeSeconds24MP, (v) => v <= 2),
    '768×512 change → 6000×4000, masked, 8-bit',
  ],
  [
    'speed vs diffusers ONNX (×)',
    fmt(summary.speedVsDiffusersOnnx, 2),
    '> 1',
    goalMet(summary.speedVsDiffusersOnnx, (v) => v > 1),
    `tiny-sd, 20 DDIM steps, 64², ${compareThreads} thread, PNG written`,
  ],
  [
    'queue overhead per file (ms)',
    fmt(summary.queueOverheadMsPerFile, 2),
    '≤ 20',
    goalMet(summary.queueOverheadMsPerFile, (v) => v <= 20),
    `1 worker vs a local batch, fixture pack, 64²; 2 ÷ 1 workers ×${fmt(summary.details.queue?.throughput?.twoOverOne, 2)} (machine's own ×${fmt(summary.details.queue?.throughput?.machine?.twoOverOne, 2)})`,
  ],
  [
    'WebGPU (llvmpipe) ÷ CPU, s/image',
    fmt(summary.details.providers?.webgpuOverCpuPerImage, 2),
    '(auto passes it over)',
    '-',
    'shapes-base, 10 steps, CLI processes',
  ],
  [
    'speed vs PyTorch (×)',
    fmt(summary.speedVsPytorch, 2),
    '> 1',
    goalMet(summary.speedVsPytorch, (v) => v > 1),
    `shapes-base, 20 DDIM steps, ${compareThreads} thread, PNG written`,
  ],
);
const header = ['figure', 'value', 'goal', 'met', 'measured on'];
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join(' │ ');
console.log(`\n${line(header)}\n${widths.map((w) => '─'.repeat(w)).join('─┼─')}`);
for (const row of table) console.log(line(row));
console.log(
  `medians of ${repeats} runs · ${summary.machine.cpus} × ${summary.machine.model} · load ${summary.machine.loadAverageAtStart.join(' ')} → ${summary.machine.loadAverageAtEnd.join(' ')} · ${summary.benchSeconds} s`,
);
for (const [name, reason] of Object.entries(summary.skipped))
  console.log(`skipped ${name}: ${reason}`);

if (only.length) {
  console.log(`partial run (RETRACE_BENCH_ONLY=${only.join(',')}): summary.json not written`);
  process.exit(0);
}
const dir = path.join(root, 'bench/results');
await mkdir(dir, { recursive: true });
const target = path.join(dir, 'summary.json');
await writeFile(`${target}.tmp`, `${JSON.stringify(summary, null, 2)}\n`);
await rename(`${target}.tmp`, target);
console.log(`wrote ${path.relative(root, target)}`);
