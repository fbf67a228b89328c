// The worker of the exactness stress test (exactness-stress.test.ts): BDIA inversions and
// replays on the tiny Stable Diffusion fixture, through the compiled engine, many to a process.
// It prints one JSON line: every replay with the source prompt that did not give back the
// inverted latent bit for bit, and every edit that changed nothing.
//
//   node exactness-worker.mjs cycles '{"from":0,"to":200,"seed":1}'
//       invert → replay(edit) → replay(source) in this one process, on two models (1 and 2
//       intra-op threads), cases interleaved four at a time and their replays shuffled.
//   node exactness-worker.mjs invert '{"from":0,"to":100,"threads":1,"dir":"…"}'
//       writes each case's inversion file and its source latent (raw float64) into dir.
//   node exactness-worker.mjs replay '{"from":0,"to":100,"threads":2,"dir":"…","seed":3}'
//       reads those files in a shuffled order and replays each with its source prompt and an edit.
import { readFile, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dist = (p) => import(path.join(root, 'dist/electron/engine', p));
const { Engine } = await dist('engine.js');
const { invertImage, replayInversion } = await dist('pipelines/invert.js');
const { readInversion, writeInversion } = await dist('formats/inversion.js');

const SD = path.join(root, 'test/fixtures/tiny-sd');
const PROMPTS = ['a cat', 'a photo of a dog on grass', 'a red circle', 'mountains at dusk', ''];
const EDITS = ['a tiger', 'a blue square', 'a watercolour painting of a harbour'];
const SIZES = [
  [64, 64],
  [64, 48],
  [32, 64],
];

/** A small seeded generator (mulberry32): the cases are a pure function of their index. */
function random(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const pick = (rand, list) => list[Math.floor(rand() * list.length)];

/** Case i: a smooth synthetic photo and the inversion's settings, varied across cases. */
export function caseOf(i) {
  const rand = random(1000 + i);
  const [width, height] = pick(rand, SIZES);
  const waves = Array.from({ length: 4 }, () => [rand() * 0.3, rand() * 0.3, rand() * 6]);
  const chw = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        let v = 0;
        for (const [fx, fy, p] of waves) v += Math.sin(fx * x + fy * y + p + c);
        chw[(c * height + y) * width + x] = Math.tanh(0.5 * v);
      }
  return {
    image: { chw, width, height },
    params: {
      model: 'tiny-sd',
      image: `case-${i}`,
      prompt: pick(rand, PROMPTS),
      steps: 8 + Math.floor(rand() * 23),
      strength: pick(rand, [0.5, 0.8, 1]),
      gamma: pick(rand, [0.9, 0.94, 0.97, 1]),
      guidance: pick(rand, [1, 3, 7.5]),
    },
    edit: pick(rand, EDITS),
  };
}

function shuffle(list, rand) {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}

async function modelWith(threads) {
  const engine = new Engine({ userDir: path.join(root, 'test/.tmp/exactness-user'), packDirs: [] });
  await engine.setRuntime({ provider: 'cpu', threads });
  return engine.model(SD);
}

const sameBits = (a, b) =>
  a.length === b.length && Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

function maxAbsDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Checks one replay against the latent its inversion started from. */
function check(report, i, kind, latent, replayed) {
  report.replays++;
  if (kind === 'source' && !sameBits(replayed, latent)) {
    report.mismatches.push({
      case: i,
      ...caseOf(i).params,
      maxAbsDiff: maxAbsDiff(replayed, latent),
    });
  }
  if (kind === 'edit' && sameBits(replayed, latent)) report.unchangedEdits.push(i);
}

async function cycles({ from, to, seed }) {
  const models = [await modelWith(1), await modelWith(2)];
  const rand = random(seed);
  const report = { cases: to - from, replays: 0, mismatches: [], unchangedEdits: [] };
  for (let start = from; start < to; start += 4) {
    const inverted = new Map();
    const replays = [];
    for (let i = start; i < Math.min(start + 4, to); i++) {
      const c = caseOf(i);
      const out = await invertImage(pick(rand, models), c.image, c.params);
      inverted.set(i, out);
      replays.push({ i, kind: 'source' }, { i, kind: 'edit', prompt: c.edit });
    }
    for (const r of shuffle(replays, rand)) {
      const { inversion, latent } = inverted.get(r.i);
      const options = r.kind === 'edit' ? { prompt: r.prompt } : {};
      const back = await replayInversion(pick(rand, models), inversion, options);
      check(report, r.i, r.kind, latent, back.latent);
    }
  }
  return report;
}

const files = (dir, i) => ({
  inversion: path.join(dir, `case-${i}.inversion.safetensors`),
  latent: path.join(dir, `case-${i}.latent.f64`),
});

async function invert({ from, to, threads, dir }) {
  const model = await modelWith(threads);
  for (let i = from; i < to; i++) {
    const c = caseOf(i);
    const out = await invertImage(model, c.image, c.params);
    const inv = out.inversion;
    await writeInversion(files(dir, i).inversion, {
      zTop: inv.top,
      zNext: inv.next,
      shape: inv.shape,
      meta: {
        packId: model.source.id,
        unetSha256: model.source.unetSha256,
        method: 'bdia',
        gamma: inv.gamma,
        levels: inv.levels,
        guidance: inv.guidance,
        prompt: inv.prompt,
        negativePrompt: inv.negativePrompt,
        width: inv.width,
        height: inv.height,
        sourceSha256: 'synthetic',
        engineVersion: 'test',
        createdAt: new Date(0).toISOString(),
      },
    });
    await writeFile(files(dir, i).latent, out.latent);
  }
  return { cases: to - from };
}

async function replay({ from, to, threads, dir, seed }) {
  const model = await modelWith(threads);
  const report = { cases: to - from, replays: 0, mismatches: [], unchangedEdits: [] };
  const jobs = [];
  for (let i = from; i < to; i++) jobs.push({ i, kind: 'source' }, { i, kind: 'edit' });
  for (const { i, kind } of shuffle(jobs, random(seed))) {
    const f = files(dir, i);
    const inv = await readInversion(f.inversion);
    const bytes = await readFile(f.latent);
    const latent = new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
    const state = {
      top: inv.zTop,
      next: inv.zNext,
      shape: inv.shape,
      levels: inv.meta.levels,
      gamma: inv.meta.gamma,
      guidance: inv.meta.guidance,
      prompt: inv.meta.prompt,
      negativePrompt: inv.meta.negativePrompt,
      steps: inv.meta.levels.length - 1,
      strength: 1,
      width: inv.meta.width,
      height: inv.meta.height,
    };
    const back = await replayInversion(
      model,
      state,
      kind === 'edit' ? { prompt: caseOf(i).edit } : {},
    );
    check(report, i, kind, latent, back.latent);
  }
  return report;
}

const [mode, json] = process.argv.slice(2);
const modes = { cycles, invert, replay };
if (!(mode in modes)) {
  process.stderr.write(`exactness-worker: mode must be one of ${Object.keys(modes).join(', ')}\n`);
  process.exit(2);
}
const started = performance.now();
const result = await modes[mode](JSON.parse(json ?? '{}'));
process.stdout.write(
  `${JSON.stringify({ mode, ...result, seconds: (performance.now() - started) / 1000 })}\n`,
);
