// `npm run bench:full-size`: Retrace against diffusers' OnnxStableDiffusionPipeline at Stable
// Diffusion 1.5's real size: the random-weight SD 1.5 fixture (models/factory/.cache/sd15-random,
// built by `npm run fixtures:full-size`), 512×512, a few DDIM steps (η 0), guidance 7.5, the
// same prompt and the same initial latent on both sides, the same onnxruntime intra-op threads
// (1 by default). Each side runs in a process of its own: Retrace is this file run with
// `--child retrace` (the compiled engine in dist/, `Engine.generate`, PNG written), the other is
// scripts/bench/sd_onnx_pipeline.py --serve (PNG written). Per pair, one side's process opens its
// sessions, makes a first image and a timed one, and exits, then the other side's does; the
// order alternates, and only one process is ever in memory (each holds ~12 GiB in fp32 at 512²).
// The ratio is the median of the pairs' diffusers seconds ÷ Retrace seconds (> 1: Retrace
// faster). Also measured: opening the sessions, the first generation, each process's peak RSS
// (VmHWM), and the same on the fp16 folder, with what onnxruntime's CPU provider does with
// float16 graphs (a profiled small call per network).
// Prints a table and writes bench/results/full-size.json.
//
//   node bench/full-size.mjs [--steps 3] [--pairs 3] [--threads 1] [--fp16-pairs 1] [--skip-fp16]
//                            [--fixture DIR] [--size 512] [--guidance 7.5] [--seed 42]
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadAverage, machineInfo } from './machine.mjs';

const here = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(here), '..');
const engineModule = path.join(root, 'dist/electron/engine/engine.js');
const rngModule = path.join(root, 'dist/electron/engine/runtime/rng.js');
const buildCommand = 'npm run fixtures:full-size';

const { values: opts } = parseArgs({
  options: {
    steps: { type: 'string', default: '3' },
    pairs: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
    size: { type: 'string', default: '512' },
    guidance: { type: 'string', default: '7.5' },
    seed: { type: 'string', default: '42' },
    prompt: { type: 'string', default: 'a photo of a cat sitting on a wooden table by a window' },
    fixture: { type: 'string', default: path.join(root, 'models/factory/.cache/sd15-random') },
    'fp16-pairs': { type: 'string', default: '1' },
    'skip-fp16': { type: 'boolean', default: false },
    python: {
      type: 'string',
      default:
        process.env.RETRACE_BENCH_PYTHON ?? path.join(root, 'models/factory/.venv/bin/python'),
    },
    // Internal: `--child retrace --model DIR --out-dir DIR` runs the Retrace side.
    child: { type: 'string' },
    model: { type: 'string' },
    'out-dir': { type: 'string' },
  },
});

function whole(name, min) {
  const value = Number(opts[name]);
  if (!Number.isInteger(value) || value < min) {
    console.error(`--${name}: expected a whole number ≥ ${min}, got '${opts[name]}'`);
    process.exit(2);
  }
  return value;
}
const steps = whole('steps', 1);
const pairs = whole('pairs', 1);
const threads = whole('threads', 1);
const size = whole('size', 64);
const seed = whole('seed', 0);
const fp16Pairs = whole('fp16-pairs', 0);
const guidance = Number(opts.guidance);
const prompt = opts.prompt;

/** This process's peak resident set in MiB: VmHWM, or libuv's maxRSS where /proc is missing. */
async function peakRssMiB() {
  try {
    const status = await readFile('/proc/self/status', 'utf8');
    const kib = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1];
    if (kib) return Number(kib) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

const firstLine = (err) =>
  (err instanceof Error ? err.message : String(err)).split('\n').find((l) => l.trim()) ?? '';
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);

// ─── The Retrace side (child process) ─────────────────────────────────────────────────────────
// Speaks scripts/bench/serve.py's protocol: one JSON header line once loaded and warmed up, then
// one JSON line per seed read from stdin.
async function retraceChild() {
  const folder = opts.model;
  const outDir = opts['out-dir'];
  if (!folder || !outDir) {
    console.error('--child retrace needs --model DIR and --out-dir DIR');
    process.exit(2);
  }
  await mkdir(outDir, { recursive: true });
  const { Engine } = await import(engineModule);
  const userDir = await mkdtemp(path.join(os.tmpdir(), 'retrace-full-size-user-'));
  const engine = new Engine({ userDir, runtime: { provider: 'cpu', threads } });
  const header = {
    tool: 'Retrace Engine.generate (compiled engine in dist/, in-process, PNG written)',
    onnxruntimeNode: JSON.parse(
      await readFile(path.join(root, 'node_modules/onnxruntime-node/package.json'), 'utf8'),
    ).version,
    threads,
  };
  const finish = async (line) => {
    print(line);
    await engine.close().catch(() => {});
    await rm(userDir, { recursive: true, force: true });
  };
  let model;
  let stage = 'describing the folder';
  try {
    let t = performance.now();
    // The folder read as a pack: configs, the unet's input types, the unet file's sha256.
    model = await engine.model(folder);
    header.describeSeconds = (performance.now() - t) / 1000;
    stage = 'opening the sessions';
    t = performance.now();
    await model.warm();
    header.sessionSeconds = (performance.now() - t) / 1000;
    header.providers = model.sessions().map((s) => s.provider.used);
  } catch (err) {
    await finish({ ...header, skipped: `${stage}: ${firstLine(err)}` });
    return;
  }
  // Seconds inside session.run so far, per network folder (unet, text_encoder, …).
  const byNetwork = () =>
    Object.fromEntries(
      model.sessions().map((s) => [path.basename(path.dirname(s.file)), s.runSeconds]),
    );
  // The engine keeps a prompt's text states for the model's lifetime (re-generating with a new
  // seed encodes nothing); diffusers encodes the prompt on every call. Forgotten before each
  // image here, so both sides do the same work per image. (A private field: if it is renamed the
  // header says promptCacheCleared: false and the text encoder's time shows the difference.)
  const promptCache = model.promptCache instanceof Map ? model.promptCache : undefined;
  header.promptCacheCleared = Boolean(promptCache);
  const once = async (runSeed) => {
    promptCache?.clear();
    const net0 = model.networkSeconds();
    const by0 = byNetwork();
    const cpu0 = process.cpuUsage();
    const t = performance.now();
    const result = await engine.generate(
      {
        model: folder,
        prompt,
        steps,
        guidance,
        width: size,
        height: size,
        seed: runSeed,
        sampler: 'ddim',
        eta: 0,
        timeShift: null,
      },
      { dir: outDir },
    );
    const seconds = (performance.now() - t) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const by1 = byNetwork();
    return {
      seconds,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      networkSeconds: model.networkSeconds() - net0,
      networkSecondsBy: Object.fromEntries(
        Object.entries(by1).map(([n, v]) => [n, v - (by0[n] ?? 0)]),
      ),
      pipelineSeconds: result.seconds,
      nfe: result.nfe,
      file: result.images[0]?.file,
      peakRssMiB: await peakRssMiB(),
    };
  };
  try {
    const first = await once(seed);
    header.firstCallSeconds = first.seconds;
    header.firstCallFile = first.file;
  } catch (err) {
    await finish({ ...header, skipped: `first generation: ${firstLine(err)}` });
    return;
  }
  print({ ...header, peakRssMiB: await peakRssMiB(), ready: true });
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    try {
      print(await once(Number(line)));
    } catch (err) {
      print({ error: firstLine(err) });
    }
  }
  await engine.close();
  await rm(userDir, { recursive: true, force: true });
}

if (opts.child === 'retrace') {
  await retraceChild();
  process.exit(0);
} else if (opts.child) {
  console.error(`--child: unknown side '${opts.child}'`);
  process.exit(2);
}

// ─── The parent ───────────────────────────────────────────────────────────────────────────────
const fixture = path.resolve(opts.fixture);
const folders = { fp32: path.join(fixture, 'fp32'), fp16: path.join(fixture, 'fp16') };
const isSdFolder = (dir) =>
  existsSync(path.join(dir, 'model_index.json')) && existsSync(path.join(dir, 'unet/model.onnx'));
if (!isSdFolder(folders.fp32)) {
  console.error(
    `bench:full-size: the full-size SD 1.5 fixture is missing (${path.relative(root, folders.fp32)}).\n` +
      `Build it first (about 10 min on 2 cores; 4.0 GiB for fp32, 2.0 GiB for fp16): ${buildCommand}`,
  );
  process.exit(1);
}
if (!existsSync(engineModule)) {
  console.error(
    'bench:full-size: the engine is not built (dist/); run `npm run build` or `npm run bench:full-size`',
  );
  process.exit(1);
}
if (!existsSync(opts.python)) {
  console.error(`bench:full-size: no Python at ${opts.python} (run npm run models:setup)`);
  process.exit(1);
}

const median = (values) => {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? null : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (v, digits = 3) =>
  typeof v === 'number' && Number.isFinite(v) ? Number(v.toFixed(digits)) : (v ?? null);
const started = performance.now();
const work = await mkdtemp(path.join(os.tmpdir(), 'retrace-full-size-'));

// The initial latent both sides start from: Retrace draws it from the seed (stream 0 of the
// seed's GaussianField, as pipelines/generate.ts does for image 0); diffusers gets the same
// values as a .npy through `latents=`. The two PNGs are compared at the end as a check.
const latentShape = [1, 4, size / 8, size / 8];
const noiseFile = path.join(work, 'latents.npy');
{
  const { GaussianField } = await import(rngModule);
  const values = new GaussianField(seed, 0).fill(
    new Float64Array(latentShape.reduce((a, b) => a * b)),
  );
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${latentShape.join(', ')}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const prefix = Buffer.alloc(10);
  Buffer.from([0x93, ...Buffer.from('NUMPY'), 1, 0]).copy(prefix);
  prefix.writeUInt16LE(header.length, 8);
  await writeFile(
    noiseFile,
    Buffer.concat([
      prefix,
      Buffer.from(header, 'latin1'),
      Buffer.from(Float32Array.from(values).buffer),
    ]),
  );
}

/**
 * Starts one side and waits for its header line (loaded, sessions open, first image made);
 * `run(seed)` then times one image, `close()` ends the process and waits for it.
 */
async function startSide(command, args, timeoutSeconds) {
  const child = spawn(command, args, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-8000);
  });
  const exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const queue = [];
  const waiting = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (!line.trim().startsWith('{')) return;
    const next = waiting.shift();
    if (next) next.resolve(line);
    else queue.push(line);
  });
  const lastError = () =>
    stderr
      .trim()
      .split('\n')
      .filter((l) => /error|exception/i.test(l))
      .pop() ??
    stderr.trim().split('\n').pop() ??
    '';
  exited.then(({ code, signal }) => {
    for (const w of waiting.splice(0))
      w.reject(new Error(`${path.basename(args[0])} exited (${code ?? signal}): ${lastError()}`));
  });
  const nextLine = () =>
    new Promise((resolve, reject) => {
      if (queue.length) return resolve(JSON.parse(queue.shift()));
      const timer = setTimeout(() => {
        child.kill();
        reject(new Error(`${path.basename(args[0])}: no answer in ${timeoutSeconds} s`));
      }, timeoutSeconds * 1000);
      waiting.push({
        resolve: (l) => (clearTimeout(timer), resolve(JSON.parse(l))),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
    });
  const close = async () => {
    child.stdin.end();
    const timer = setTimeout(() => child.kill(), 120_000);
    await exited;
    clearTimeout(timer);
  };
  let header;
  try {
    header = await nextLine();
  } catch (err) {
    await close();
    return { skipped: firstLine(err) };
  }
  if (header.skipped) {
    await close();
    return { skipped: header.skipped, header };
  }
  return {
    header,
    run: async (runSeed) => {
      child.stdin.write(`${runSeed}\n`);
      const answer = await nextLine();
      if (answer.error) throw new Error(answer.error);
      return answer;
    },
    close,
  };
}

const startRetrace = (folder, outDir) =>
  startSide(
    process.execPath,
    [here, '--child', 'retrace', '--model', folder, '--out-dir', outDir]
      .concat(['--steps', String(steps), '--guidance', String(guidance), '--size', String(size)])
      .concat(['--threads', String(threads), '--seed', String(seed), '--prompt', prompt]),
    3600,
  );
const startDiffusers = (folder, outDir) =>
  startSide(
    opts.python,
    [path.join(root, 'scripts/bench/sd_onnx_pipeline.py'), '--model', folder]
      .concat(['--steps', String(steps), '--guidance', String(guidance), '--size', String(size)])
      .concat(['--threads', String(threads), '--seed', String(seed), '--prompt', prompt])
      .concat(['--latents', noiseFile, '--out-dir', outDir, '--serve']),
    3600,
  );

/** Max and mean |a − b| over two 8-bit images' samples (null when either is missing). */
async function imageDifference(a, b) {
  if (!a || !b || !existsSync(a) || !existsSync(b)) return null;
  const { default: sharp } = await import('sharp');
  const [x, y] = await Promise.all(
    [a, b].map((f) => sharp(f).removeAlpha().raw().toBuffer({ resolveWithObject: true })),
  );
  if (x.data.length !== y.data.length) return { sameSize: false };
  let max = 0;
  let sum = 0;
  for (let i = 0; i < x.data.length; i++) {
    const d = Math.abs(x.data[i] - y.data[i]);
    max = Math.max(max, d);
    sum += d;
  }
  return { maxAbs8bit: max, meanAbs8bit: round(sum / x.data.length, 4) };
}

/** One side's figures over its processes (each: a header, then its timed image). */
function sideFigures(procs) {
  const runs = procs.flatMap((p) => p.runs);
  const headers = procs.map((p) => p.header);
  const h = headers[0] ?? {};
  const each = (key, digits = 3) =>
    headers.map((x) => round(x[key], digits)).filter((v) => typeof v === 'number');
  return {
    tool: h.tool,
    secondsPerImage: round(median(runs.map((r) => r.seconds)), 3),
    networkSecondsPerImage: round(median(runs.map((r) => r.networkSeconds)), 3),
    runs: runs.map((r) => round(r.seconds, 3)),
    // The process's CPU seconds ÷ wall seconds per timed image: with one intra-op thread about
    // 1 on a quiet machine, clearly under 1 when another process took the core.
    cpuPerWall: runs.map((r) => round(r.cpuSeconds / r.seconds, 2)),
    networkSecondsByNetwork: Object.fromEntries(
      [...new Set(runs.flatMap((r) => Object.keys(r.networkSecondsBy ?? {})))].map((n) => [
        n,
        round(median(runs.map((r) => r.networkSecondsBy?.[n] ?? 0)), 3),
      ]),
    ),
    ...(h.describeSeconds !== undefined
      ? { describeFolderSeconds: round(median(each('describeSeconds')), 3) }
      : {}),
    sessionCreationSeconds: round(median(each('sessionSeconds')), 3),
    sessionCreationRuns: each('sessionSeconds'),
    firstCallSeconds: round(median(each('firstCallSeconds')), 3),
    firstCallRuns: each('firstCallSeconds'),
    peakRssMiB: round(Math.max(...procs.map((p) => p.peakRssMiB)), 1),
    peakRssRunsMiB: procs.map((p) => round(p.peakRssMiB, 1)),
    processes: procs.length,
    ...(h.providers ? { providers: h.providers } : {}),
    ...(h.promptCacheCleared !== undefined ? { promptCacheCleared: h.promptCacheCleared } : {}),
    ...(h.onnxruntime ? { onnxruntime: h.onnxruntime, diffusers: h.diffusers } : {}),
    ...(h.onnxruntimeNode ? { onnxruntimeNode: h.onnxruntimeNode } : {}),
  };
}

/**
 * One folder, `count` pairs. Each pair starts one side's process (it opens the sessions and
 * makes its first image), times one more image, ends the process, then does the same for the
 * other side; the order alternates from pair to pair. Only one side is ever in memory: each
 * holds about 12 GiB at 512² in fp32 (weights, onnxruntime's pre-packed copies and its arena),
 * and two of them did not fit in 24 GiB. A side that cannot start is recorded as skipped with
 * its reason (and not started again); the other still runs.
 */
async function measure(name, folder, count) {
  const outDir = path.join(work, name);
  await mkdir(path.join(outDir, 'diffusers'), { recursive: true });
  const sides = {
    retrace: { start: () => startRetrace(folder, path.join(outDir, 'retrace')), procs: [] },
    diffusers: { start: () => startDiffusers(folder, path.join(outDir, 'diffusers')), procs: [] },
  };
  const ratios = [];
  const order = [];
  for (let i = 0; i < count; i++) {
    const names = i % 2 ? ['diffusers', 'retrace'] : ['retrace', 'diffusers'];
    order.push(names.join(' → '));
    const pair = {};
    for (const sideName of names) {
      const side = sides[sideName];
      if (side.skipped || side.failed) continue;
      const tag = `${name} pair ${i + 1}/${count} ${sideName}`;
      const proc = await side.start();
      if (proc.skipped) {
        side.skipped = proc.skipped;
        console.log(`${tag}: skipped: ${proc.skipped}`);
        continue;
      }
      console.log(
        `${tag}: sessions ${proc.header.sessionSeconds.toFixed(1)} s, first image ${proc.header.firstCallSeconds.toFixed(1)} s`,
      );
      const record = { header: proc.header, runs: [], peakRssMiB: proc.header.peakRssMiB ?? 0 };
      try {
        const r = await proc.run(seed);
        record.runs.push(r);
        record.peakRssMiB = Math.max(record.peakRssMiB, r.peakRssMiB ?? 0);
        pair[sideName] = r.seconds;
        console.log(
          `${tag}: image ${r.seconds.toFixed(2)} s, peak RSS ${record.peakRssMiB.toFixed(0)} MiB`,
        );
      } catch (err) {
        side.failed = `pair ${i + 1}: ${firstLine(err)}`;
        console.log(`${tag}: failed: ${side.failed}`);
      } finally {
        await proc.close();
      }
      side.procs.push(record);
    }
    if (pair.retrace && pair.diffusers) ratios.push(pair.diffusers / pair.retrace);
  }
  const figures = (side) =>
    side.procs.length
      ? {
          ...sideFigures(side.procs),
          ...(side.failed ? { failed: side.failed } : {}),
          ...(side.skipped ? { skippedLater: side.skipped } : {}),
        }
      : { skipped: side.skipped ?? side.failed };
  const row = {
    folder: path.relative(root, folder),
    pairs: count,
    order,
    retrace: figures(sides.retrace),
    diffusers: figures(sides.diffusers),
  };
  if (ratios.length) {
    row.ratio = round(median(ratios), 3);
    row.pairedRatios = ratios.map((r) => round(r, 3));
    row.ratioSpread = [round(Math.min(...ratios), 3), round(Math.max(...ratios), 3)];
  }
  // Same networks, same noise, same DDIM steps: the two images should agree up to float
  // round-off (Retrace keeps the sampler state in float64, diffusers in float32).
  const last = sides.retrace.procs.at(-1);
  const retraceFile = last?.runs.at(-1)?.file ?? last?.header.firstCallFile;
  const diffusersFile = path.join(outDir, 'diffusers', `diffusers-${seed}-0.png`);
  row.imageDifference = await imageDifference(retraceFile, diffusersFile);
  return row;
}

/** What onnxruntime for Python's CPU provider makes of a folder's graphs (small profiled calls). */
async function graphReport(folder) {
  return new Promise((resolve) => {
    const child = spawn(
      opts.python,
      [
        path.join(root, 'scripts/bench/sd_onnx_pipeline.py'),
        '--model',
        folder,
        '--graph-report',
      ].concat(['--threads', String(threads)]),
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err = (err + c).slice(-4000)));
    child.on('exit', (code) => {
      const line = out
        .split('\n')
        .reverse()
        .find((l) => l.trim().startsWith('{'));
      resolve(
        code === 0 && line
          ? JSON.parse(line)
          : { skipped: `graph report failed (${code}): ${err.trim().split('\n').pop() ?? ''}` },
      );
    });
  });
}

const summary = {
  what:
    'Retrace vs diffusers OnnxStableDiffusionPipeline on Stable Diffusion 1.5-sized networks with RANDOM weights ' +
    '(models/factory/.cache/sd15-random, built by scripts/sd-fixture/make_full_size.py): the cost of the real ' +
    'architecture, not image quality',
  date: new Date().toISOString(),
  settings: {
    size: `${size}×${size}`,
    steps,
    guidance,
    sampler:
      'DDIM, eta 0 (diffusers: DDIMScheduler from the folder’s scheduler config, clip_sample false)',
    prompt,
    negativePrompt: '',
    seed,
    initialNoise:
      'the same latent on both sides: Retrace’s GaussianField(seed, stream 0), given to diffusers as latents=',
    threads: `${threads} intra-op thread(s) for both (inter-op 1), CPU execution provider, graph optimisation level all`,
    pngWritten: 'both sides write a PNG per image, inside the timed call',
    promptEncoding:
      'both sides run the text encoder (prompt and empty negative prompt) for every image: Retrace’s per-prompt cache is cleared before each one',
    retraceDrivenBy:
      'the compiled engine (dist/electron/engine/engine.js), Engine.generate in a child process (this file with --child retrace); ' +
      'the timed image is the process’s second, so neither process start nor session creation is in it, as on the diffusers side',
    diffusersDrivenBy:
      'scripts/bench/sd_onnx_pipeline.py --serve (scripts/bench/serve.py): its warm-up image, then the timed one',
    pairing:
      'per pair: one side’s process starts (sessions, first image), makes one timed image and exits, then the other side’s; ' +
      'order alternating from pair to pair; one process in memory at a time (each holds ~12 GiB at 512² fp32; two did not fit in 24 GiB: ' +
      'the kernel killed one); ratio = median over pairs of diffusers s ÷ Retrace s (> 1: Retrace faster)',
    peakRss:
      'each side’s own process, VmHWM from /proc/self/status after its timed image; the max over its processes',
    sessionCreation:
      'opening the four networks’ sessions (unet, text_encoder, vae_encoder, vae_decoder), median over the side’s processes; ' +
      'Retrace’s describeFolderSeconds (configs + sha256 of unet/model.onnx, hash cache empty) comes before it',
    firstCall:
      'the first generation after the sessions opened (onnxruntime allocates its arenas), median over the side’s processes, not in the per-image medians',
  },
  machine: await machineInfo(root),
  fixture: JSON.parse(
    await readFile(path.join(folders.fp32, 'fixture.json'), 'utf8').catch(() => '{}'),
  ),
  fp32: null,
  fp16: null,
  skipped: {},
};
delete summary.fixture.unet;
delete summary.fixture.vae;
delete summary.fixture.textEncoder;
delete summary.fixture.scheduler;

summary.fp32 = await measure('fp32', folders.fp32, pairs);

if (opts['skip-fp16']) summary.skipped.fp16 = '--skip-fp16';
else if (!isSdFolder(folders.fp16))
  summary.skipped.fp16 = `no fp16 folder at ${path.relative(root, folders.fp16)} (${buildCommand} builds it)`;
else {
  summary.fp16 = await measure('fp16', folders.fp16, fp16Pairs);
  console.log('fp16: profiling what onnxruntime (Python, CPU) does with the float16 graphs…');
  const report = await graphReport(folders.fp16);
  summary.fp16.onnxruntimeCpuFloat16 = report.skipped
    ? report
    : {
        how:
          'onnxruntime for Python, CPU provider, one profiled call per network on a small input; for every node the ' +
          'element type of its first floating-point input as the profiler records it (float16 = ran in half precision, ' +
          'float = ran in float32 after a Cast), and the Casts run',
        ...report,
      };
  const summed = (key) =>
    report.networks
      ? Object.fromEntries(Object.entries(report.networks).map(([n, r]) => [n, r[key]]))
      : null;
  if (report.networks) {
    summary.fp16.onnxruntimeCpuFloat16.summary = {
      castNodesRun: summed('castNodesRun'),
      castNodesInsertedByOnnxruntime: summed('castNodesInsertedByOnnxruntime'),
      nodesBy1stFloatInputType: summed('nodesBy1stFloatInputType'),
    };
  }
}

await rm(work, { recursive: true, force: true });
summary.machine.loadAverageAtEnd = loadAverage();
summary.benchSeconds = round((performance.now() - started) / 1000, 1);

const dir = path.join(root, 'bench/results');
await mkdir(dir, { recursive: true });
const target = path.join(dir, 'full-size.json');
await writeFile(`${target}.tmp`, `${JSON.stringify(summary, null, 2)}\n`);
await rename(`${target}.tmp`, target);

// The table.
const fmt = (v, digits = 2) => (typeof v === 'number' ? v.toFixed(digits) : '—');
const rows = [];
for (const kind of ['fp32', 'fp16']) {
  const r = summary[kind];
  if (!r) {
    rows.push([`${kind}`, 'skipped', 'skipped', '', summary.skipped[kind] ?? '']);
    continue;
  }
  const a = r.retrace;
  const b = r.diffusers;
  const cell = (side, key, digits) => (side.skipped ? 'skipped' : fmt(side[key], digits));
  const spread = r.ratioSpread ? `${fmt(r.ratioSpread[0])}–${fmt(r.ratioSpread[1])}` : '';
  rows.push(
    [
      `${kind} s/image (median)`,
      cell(a, 'secondsPerImage'),
      cell(b, 'secondsPerImage'),
      r.ratio !== undefined ? `×${fmt(r.ratio)}` : '',
      r.ratio !== undefined
        ? `${r.pairs} pair${r.pairs === 1 ? '' : 's'}, ratios ${spread}`
        : `${r.pairs} run(s)`,
    ],
    [
      `${kind} in session.run (s)`,
      cell(a, 'networkSecondsPerImage'),
      cell(b, 'networkSecondsPerImage'),
      '',
      '',
    ],
    [
      `${kind} session creation (s)`,
      cell(a, 'sessionCreationSeconds'),
      cell(b, 'sessionCreationSeconds'),
      '',
      a.describeFolderSeconds !== undefined
        ? `Retrace + ${fmt(a.describeFolderSeconds)} s describing the folder`
        : '',
    ],
    [`${kind} first image (s)`, cell(a, 'firstCallSeconds'), cell(b, 'firstCallSeconds'), '', ''],
    [
      `${kind} CPU ÷ wall, timed images`,
      a.cpuPerWall?.join(' ') ?? '',
      b.cpuPerWall?.join(' ') ?? '',
      '',
      'about 1 with one thread on a quiet machine',
    ],
    [`${kind} peak RSS (MiB)`, cell(a, 'peakRssMiB', 0), cell(b, 'peakRssMiB', 0), '', ''],
  );
  if (r.imageDifference)
    rows.push([
      `${kind} image difference`,
      '',
      '',
      '',
      `max ${r.imageDifference.maxAbs8bit}/255, mean ${r.imageDifference.meanAbs8bit}`,
    ]);
  for (const [side, s] of [
    ['Retrace', a],
    ['diffusers', b],
  ])
    if (s.skipped) rows.push([`${kind} ${side}`, '', '', '', `skipped: ${s.skipped}`]);
}
const networks = summary.fp16?.onnxruntimeCpuFloat16?.networks ?? {};
for (const [net, r] of Object.entries(networks)) {
  const types = Object.entries(r.nodesBy1stFloatInputType ?? {})
    .map(([t, n]) => `${n} ${t}`)
    .join(', ');
  rows.push([
    `fp16 ORT CPU ${net}`,
    '',
    '',
    '',
    `nodes by input type: ${types}; Casts run ${r.castNodesRun} (${r.castNodesInsertedByOnnxruntime} inserted by onnxruntime)`,
  ]);
}
const header = ['figure', 'Retrace', 'diffusers', 'd ÷ R', 'notes'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join(' │ ');
console.log(`\n${line(header)}\n${widths.map((w) => '─'.repeat(w)).join('─┼─')}`);
for (const row of rows) console.log(line(row));
console.log(
  `${size}², ${steps} DDIM steps, guidance ${guidance}, ${threads} thread(s) · ${summary.machine.cpus} × ${summary.machine.model} · load ${summary.machine.loadAverageAtStart.join(' ')} → ${summary.machine.loadAverageAtEnd.join(' ')} · ${summary.benchSeconds} s`,
);
console.log(`wrote ${path.relative(root, target)}`);
