// The `retrace` command: every engine job, headless. Output files and one-line JSON on stdout
// (with --json) for scripts; progress on stderr (bars on a terminal, plain lines otherwise).
// Exit codes: 0 done, 1 a job (or any file of a batch) failed, 2 usage error, 130 cancelled.
import os from 'node:os';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import type { GenerateParams, InvertParams, RestoreParams } from '../contract/jobs.js';
import { Engine, ENGINE_VERSION, type ImageFormat } from '../engine/engine.js';
import { describeError, isCancelled, RetraceError } from '../engine/errors.js';
import { defaultPackDirs } from '../engine/packs/loader.js';
import { networkSummary } from '../engine/packs/networks.js';
import type { RunOptions } from '../engine/progress.js';
import { choiceOption, floatOption, intOption, timeShiftOption } from './options.js';
import { createReporter, type ProgressReporter } from './progress.js';
import { queueCommands } from './queue.js';

export const EXIT = { ok: 0, failed: 1, usage: 2, cancelled: 130 } as const;

interface GlobalOptions {
  provider: 'auto' | 'cpu' | 'cuda' | 'dml' | 'coreml' | 'webgpu';
  threads?: number;
  packs?: string[];
  userDir: string;
  quiet?: boolean;
}

/** Where the CLI records imported packs, unless --user-dir says otherwise. */
function defaultUserDir(): string {
  const base =
    process.env.XDG_DATA_HOME ??
    (process.platform === 'win32'
      ? (process.env.APPDATA ?? path.join(os.homedir(), 'AppData', 'Roaming'))
      : process.platform === 'darwin'
        ? path.join(os.homedir(), 'Library', 'Application Support')
        : path.join(os.homedir(), '.local', 'share'));
  return path.join(base, 'retrace');
}

class Session {
  readonly controller = new AbortController();
  private engine: Engine | undefined;
  reporter: ProgressReporter | undefined;
  exitCode: number = EXIT.ok;

  constructor(
    private readonly out: (line: string) => void,
    private readonly err: (line: string) => void,
  ) {}

  open(g: GlobalOptions): Engine {
    const packDirs = g.packs?.map((p) => path.resolve(p));
    this.engine ??= new Engine({
      userDir: g.userDir,
      ...(packDirs ? { packDirs: [...packDirs, ...defaultPackDirs()] } : {}),
      runtime: { provider: g.provider, ...(g.threads !== undefined ? { threads: g.threads } : {}) },
    });
    return this.engine;
  }

  private quiet = false;

  run(g: GlobalOptions): RunOptions {
    this.quiet = Boolean(g.quiet);
    this.reporter = createReporter({ quiet: g.quiet });
    const reporter = this.reporter;
    return { signal: this.controller.signal, onProgress: (e) => reporter.update(e) };
  }

  print(value: unknown, json: boolean | undefined, human: string): void {
    this.reporter?.stop();
    // A job's JSON says where its networks ran and why other providers were not used.
    const withRuntime =
      json &&
      this.reporter &&
      this.engine &&
      value &&
      typeof value === 'object' &&
      !Array.isArray(value)
        ? { ...value, runtime: this.engine.runtimeReport() }
        : value;
    this.out(json ? JSON.stringify(withRuntime) : human);
  }

  log(message: string): void {
    if (this.reporter) this.reporter.log(message);
    else this.err(message);
  }

  /** A warning reaches stderr even with --quiet (which silences progress, not problems). */
  warn(message: string): void {
    if (this.reporter && !this.quiet) this.reporter.log(`retrace: warning: ${message}`);
    else this.err(`retrace: warning: ${message}`);
  }

  async close(): Promise<void> {
    this.reporter?.stop();
    await this.engine?.close();
  }
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function buildProgram(
  session: Session,
  out: (s: string) => void,
  err: (s: string) => void,
): Command {
  const program = new Command('retrace')
    .description(
      'Retrace: exact BDIA inversion, Time-Shift sampling and Resfusion restoration on ONNX diffusion packs.',
    )
    .version(ENGINE_VERSION)
    .addOption(
      new Option('--provider <name>', 'execution provider')
        .choices(['auto', 'cpu', 'cuda', 'dml', 'coreml', 'webgpu'])
        .default('auto'),
    )
    .option(
      '--threads <n>',
      'CPU threads for the networks (0: one per core)',
      intOption('--threads', 0, 256),
    )
    .option('--packs <dir>', 'an extra folder of model packs (repeatable)', collect)
    .option('--user-dir <dir>', 'where imported packs are recorded', defaultUserDir())
    .option('-q, --quiet', 'no progress output')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => out(s.trimEnd()), writeErr: (s) => err(s.trimEnd()) });

  const globals = () => program.opts<GlobalOptions>();
  // Workers, queues, shards and report merging (electron/cli/queue.ts, docs/queue.md).
  const distributed = queueCommands({
    engine: () => session.open(globals()),
    run: () => session.run(globals()),
    print: (value, json, human) => session.print(value, json, human),
    log: (message) => session.log(message),
    setExitCode: (code) => (session.exitCode = code),
    quiet: () => Boolean(globals().quiet),
  });

  program
    .command('generate')
    .description('text to image')
    .requiredOption('--model <id>', 'pack id or folder')
    .requiredOption('--prompt <text>', 'what to draw')
    .option('--negative <text>', 'negative prompt', '')
    .option('--steps <n>', 'sampling steps (default: the pack’s)', intOption('--steps', 1, 1000))
    .option('--guidance <g>', 'classifier-free guidance scale', floatOption('--guidance', 0, 50))
    .option(
      '--seed <s>',
      'first seed (default: random, printed)',
      intOption('--seed', 0, 2 ** 32 - 1),
    )
    .option('--count <k>', 'images, from seeds S … S+K−1', intOption('--count', 1, 256), 1)
    .option(
      '--sampler <name>',
      'ddim or bdia',
      choiceOption('--sampler', ['ddim', 'bdia'] as const),
      'ddim',
    )
    .option(
      '--gamma <g>',
      'BDIA γ (default 0.5 at ≤10 steps, towards 1 at 40)',
      floatOption('--gamma', 0, 1),
    )
    .option('--eta <e>', 'DDIM η (0: deterministic)', floatOption('--eta', 0, 1), 0)
    .option(
      '--time-shift <w:cutoff[:variant]>',
      'Time-Shift window and cutoff, or off (default: the pack’s)',
      timeShiftOption,
    )
    .option('--width <px>', 'image width', intOption('--width', 8, 4096))
    .option('--height <px>', 'image height', intOption('--height', 8, 4096))
    .requiredOption('--out <dir|file>', 'output folder, or a file name (.png, .jpg, .webp)')
    .option(
      '--format <fmt>',
      'png, jpeg or webp (folder output)',
      choiceOption('--format', ['png', 'jpeg', 'webp'] as const),
    )
    .option('--json', 'print one JSON line')
    .action(async (o) => {
      const g = globals();
      const engine = session.open(g);
      const params: GenerateParams = {
        model: o.model,
        prompt: o.prompt,
        negativePrompt: o.negative,
        count: o.count,
        sampler: o.sampler,
        eta: o.eta,
        ...(o.steps !== undefined ? { steps: o.steps } : {}),
        ...(o.guidance !== undefined ? { guidance: o.guidance } : {}),
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...(o.gamma !== undefined ? { gamma: o.gamma } : {}),
        ...(o.timeShift !== undefined ? { timeShift: o.timeShift } : {}),
        ...(o.width !== undefined ? { width: o.width } : {}),
        ...(o.height !== undefined ? { height: o.height } : {}),
      };
      const isFile = /\.(png|jpe?g|webp)$/i.test(o.out);
      const result = await engine.generate(
        params,
        isFile
          ? { file: o.out }
          : { dir: o.out, ...(o.format ? { format: o.format as ImageFormat } : {}) },
        session.run(g),
      );
      session.print(
        result,
        o.json,
        result.images.map((i) => `${i.file} (seed ${i.seed})`).join('\n') +
          `\n${result.images.length} image(s), ${result.nfe} network calls, ${result.seconds.toFixed(1)} s`,
      );
    });

  const inversionOptions = (c: Command) =>
    c
      .requiredOption('--model <id>', 'pack id or folder')
      .requiredOption('--prompt <text>', 'a caption of the photo (the source prompt)')
      .option('--negative <text>', 'negative prompt', '')
      .option('--steps <n>', 'DDIM grid steps N', intOption('--steps', 2, 1000))
      .option(
        '--strength <s>',
        'fraction of the grid walked (0–1]',
        floatOption('--strength', 1e-6, 1),
      )
      .option(
        '--gamma <g>',
        'BDIA γ (0.94 advised; below 0.85 refused)',
        floatOption('--gamma', 1e-6, 1),
      )
      .option('--guidance <g>', 'guidance scale, both ways', floatOption('--guidance', 0, 50))
      .option('--allow-low-gamma', 'accept γ below 0.85 (errors grow like (1/γ)^M)');

  const invertParams = (image: string, o: Record<string, unknown>): InvertParams => ({
    model: o.model as string,
    image,
    prompt: o.prompt as string,
    negativePrompt: o.negative as string,
    allowLowGamma: Boolean(o.allowLowGamma),
    ...(o.steps !== undefined ? { steps: o.steps as number } : {}),
    ...(o.strength !== undefined ? { strength: o.strength as number } : {}),
    ...(o.gamma !== undefined ? { gamma: o.gamma as number } : {}),
    ...(o.guidance !== undefined ? { guidance: o.guidance as number } : {}),
  });

  inversionOptions(
    program
      .command('invert')
      .description('invert a photo to a replayable BDIA inversion file')
      .argument('<image>', 'the photo'),
  )
    .requiredOption('--out <file>', 'NAME.inversion.safetensors')
    .option('--json', 'print one JSON line')
    .action(async (image: string, o) => {
      const g = globals();
      const result = await session
        .open(g)
        .invertImage(invertParams(image, o), o.out, session.run(g));
      session.print(
        result,
        o.json,
        `${result.inversion}\npreview ${result.preview}\n${result.nfe} network calls, ${result.seconds.toFixed(1)} s`,
      );
    });

  program
    .command('edit')
    .description(
      'edit a photo: invert it with --source-prompt and replay it with --prompt, the result at the photo’s own size',
    )
    .argument('<photo>', 'the photo (PNG, JPEG, WebP, TIFF, AVIF)')
    .requiredOption('--model <id>', 'pack id or folder')
    .requiredOption('--source-prompt <text>', 'a caption of the photo as it is')
    .requiredOption(
      '--prompt <text>',
      'the photo as it should be (the same text: the photo, unchanged)',
    )
    .option('--negative <text>', 'negative prompt', '')
    .option(
      '--mask <image>',
      'edit only where this image is white (or opaque); any size, scaled to the photo',
    )
    .option(
      '--auto-mask',
      'find the mask from the two prompts (DiffEdit: where the network’s noise estimates disagree)',
    )
    .option(
      '--mask-ratio <r>',
      'auto mask: mark where the prompts differ by more than r/2 × their mean difference (default 3; lower marks more)',
      floatOption('--mask-ratio', 1, 20),
    )
    .option('--mask-out <png>', 'write the mask used (photo size, white = edited)')
    .option(
      '--feather <px>',
      'soften the mask edge over this many pixels (default 0.5 % of the long side)',
      floatOption('--feather', 0, 1000),
    )
    .option(
      '--working-size <n>',
      'long side of the image the network works on (a multiple of the pack’s; default: the pack’s size)',
      intOption('--working-size', 8, 4096),
    )
    .option('--steps <n>', 'DDIM grid steps N', intOption('--steps', 2, 1000))
    .option(
      '--strength <s>',
      'fraction of the grid walked (0–1]',
      floatOption('--strength', 1e-6, 1),
    )
    .option(
      '--gamma <g>',
      'BDIA γ (0.94 advised; below 0.85 refused)',
      floatOption('--gamma', 1e-6, 1),
    )
    .option('--guidance <g>', 'guidance scale, both ways', floatOption('--guidance', 0, 50))
    .option('--allow-low-gamma', 'accept γ below 0.85 (errors grow like (1/γ)^M)')
    .option('--export-inversion <file>', 'also write the inversion (NAME.inversion.safetensors)')
    .addOption(
      new Option('--method <m>', 'bdia (exact), or naive DDIM inversion as a baseline')
        .choices(['bdia', 'ddim-inversion'])
        .default('bdia'),
    )
    .requiredOption(
      '--out <image>',
      'the result: .png keeps every pixel outside the mask exactly (8 or 16 bit, ICC kept); .jpg, .webp re-encode',
    )
    .option('--json', 'print one JSON line')
    .action(async (photo: string, o) => {
      const g = globals();
      const result = await session.open(g).edit(
        {
          model: o.model as string,
          image: photo,
          sourcePrompt: o.sourcePrompt as string,
          prompt: o.prompt as string,
          negativePrompt: o.negative as string,
          allowLowGamma: Boolean(o.allowLowGamma),
          ...(o.mask !== undefined ? { mask: o.mask as string } : {}),
          autoMask: Boolean(o.autoMask),
          method: o.method as 'bdia' | 'ddim-inversion',
          ...(o.maskRatio !== undefined ? { maskRatio: o.maskRatio as number } : {}),
          ...(o.maskOut !== undefined ? { maskOut: o.maskOut as string } : {}),
          ...(o.feather !== undefined ? { feather: o.feather as number } : {}),
          ...(o.workingSize !== undefined ? { workingSize: o.workingSize as number } : {}),
          ...(o.steps !== undefined ? { steps: o.steps as number } : {}),
          ...(o.strength !== undefined ? { strength: o.strength as number } : {}),
          ...(o.gamma !== undefined ? { gamma: o.gamma as number } : {}),
          ...(o.guidance !== undefined ? { guidance: o.guidance as number } : {}),
          ...(o.exportInversion !== undefined
            ? { exportInversion: o.exportInversion as string }
            : {}),
        },
        o.out as string,
        session.run(g),
      );
      for (const w of result.warnings ?? []) session.warn(w);
      session.print(
        result,
        o.json,
        `${result.image} (${result.width}×${result.height}${result.unchanged ? ', unchanged' : ''})\n${result.nfe} network calls, ${result.seconds.toFixed(1)} s`,
      );
    });

  program
    .command('replay')
    .description('replay an inversion; with --prompt, the edit')
    .argument('<file>', 'a .inversion.safetensors file')
    .option(
      '--source <photo>',
      'the photo the inversion was made from: the result comes back at its full size',
    )
    .option('--mask <image>', 'with --source: edit only where this image is white (or opaque)')
    .option(
      '--feather <px>',
      'soften the mask edge over this many pixels (default 0.5 % of the long side)',
      floatOption('--feather', 0, 1000),
    )
    .option('--prompt <text>', 'the edit prompt (default: the source prompt)')
    .option('--negative <text>', 'negative prompt (default: the inversion’s)')
    .option(
      '--guidance <g>',
      'guidance scale (default: the inversion’s)',
      floatOption('--guidance', 0, 50),
    )
    .option('--model <id>', 'pack (default: the inversion’s; must be the same network)')
    .option(
      '--allow-other-pack',
      'replay with --model on another pack (e.g. another precision of the same model): not bit-exact; the error is reported',
    )
    .requiredOption('--out <image>', 'output image (.png, .jpg, .webp)')
    .option('--json', 'print one JSON line')
    .action(async (file: string, o) => {
      const g = globals();
      const result = await session.open(g).replayInversion(
        {
          inversion: file,
          ...(o.source !== undefined ? { source: o.source as string } : {}),
          ...(o.mask !== undefined ? { mask: o.mask as string } : {}),
          ...(o.feather !== undefined ? { feather: o.feather as number } : {}),
          ...(o.prompt !== undefined ? { prompt: o.prompt } : {}),
          ...(o.negative !== undefined ? { negativePrompt: o.negative } : {}),
          ...(o.guidance !== undefined ? { guidance: o.guidance } : {}),
          ...(o.model !== undefined ? { model: o.model } : {}),
          ...(o.allowOtherPack === true ? { allowOtherPack: true } : {}),
        },
        o.out,
        session.run(g),
      );
      for (const w of result.warnings ?? []) session.warn(w);
      session.print(
        result,
        o.json,
        `${result.image}\n${result.nfe} network calls, ${result.seconds.toFixed(1)} s`,
      );
    });

  inversionOptions(
    program
      .command('roundtrip')
      .description('invert and replay with the same prompt; report the error')
      .argument('<image>', 'the photo'),
  )
    .option(
      '--method <m>',
      'bdia or ddim-inversion (the inexact baseline)',
      choiceOption('--method', ['bdia', 'ddim-inversion'] as const),
      'bdia',
    )
    .option('--out <image>', 'also write the replayed image')
    .option('--json', 'print one JSON line')
    .action(async (image: string, o) => {
      const g = globals();
      const result = await session
        .open(g)
        .roundtrip(
          { ...invertParams(image, o), method: o.method },
          o.out ? { image: o.out } : {},
          session.run(g),
        );
      session.print(
        result,
        o.json,
        `${result.method}: latent max |error| ${result.latentMaxAbsError.toExponential(2)}, ` +
          `pixel max |error| ${result.pixelMaxAbsError.toFixed(3)} of 255 ` +
          `(VAE alone ${result.vaeMaxAbsError.toFixed(1)}), ${result.steps} steps each way, ` +
          `${result.nfe} network calls, ${result.seconds.toFixed(1)} s`,
      );
    });

  program
    .command('restore')
    .description('restore photos or folders with a Resfusion pack')
    .argument('<paths...>', 'images and/or folders')
    .requiredOption('--model <id>', 'restoration pack id or folder')
    .requiredOption('--out <dir>', 'output folder (sub-folders mirrored)')
    .option('--recursive', 'descend into sub-folders')
    .option('--skip-existing', 'skip inputs whose output exists (resume)')
    .option('--seed <s>', 'noise seed', intOption('--seed', 0, 2 ** 32 - 1), 0)
    .option(
      '--tile <n>',
      'square tiles of this side (default: planned from a 1.5 GiB memory budget, one tile when the photo fits)',
      intOption('--tile', 16, 4096),
    )
    .option('--overlap <n>', 'tile overlap in pixels', intOption('--overlap', 0, 1024))
    .option(
      '--format <fmt>',
      'same, png, jpeg, webp, tiff or avif',
      choiceOption('--format', ['same', 'png', 'jpeg', 'webp', 'tiff', 'avif'] as const),
      'same',
    )
    .option('--deterministic', 'no noise between steps: higher PSNR, a little less texture')
    .option('--report <file>', 'JSON report (CSV beside it); default OUT/retrace-report.json')
    .option('--json', 'print the summary as one JSON line')
    .action(async (paths: string[], o) => {
      if (await distributed.restore(paths, o)) return;
      const g = globals();
      const params: RestoreParams = {
        model: o.model,
        inputs: paths,
        outputDir: o.out,
        recursive: Boolean(o.recursive),
        skipExisting: Boolean(o.skipExisting),
        seed: o.seed,
        format: o.format,
        ...(o.deterministic ? { deterministic: true } : {}),
        ...(o.tile !== undefined ? { tile: o.tile } : {}),
        ...(o.overlap !== undefined ? { overlap: o.overlap } : {}),
        ...(o.report !== undefined ? { report: o.report } : {}),
      };
      const run = session.run(g);
      const result = await session.open(g).restore(params, {
        ...run,
        onItem: (item, done, total) => {
          if (item.status === 'failed')
            session.log(`failed (${done}/${total}): ${item.error ?? ''}`);
        },
      });
      const count = (s: string) => result.items.filter((i) => i?.status === s).length;
      const summary = {
        ok: count('ok'),
        failed: count('failed'),
        skipped: count('skipped'),
        cancelled: result.cancelled,
        report: result.report,
        csv: result.csv,
      };
      session.print(
        summary,
        o.json,
        `${summary.ok} restored, ${summary.skipped} skipped, ${summary.failed} failed; report ${result.report}`,
      );
      if (result.cancelled) session.exitCode = EXIT.cancelled;
      else if (summary.failed > 0) session.exitCode = EXIT.failed;
    });

  program
    .command('providers')
    .description('the execution providers Retrace would try here, and why others are passed over')
    .option('--json', 'print JSON')
    .action((o) => {
      const report = session.open(globals()).providers();
      const lines = [
        `tries, in order: ${report.candidates.join(' → ')}`,
        ...report.passedOver.map((p) => `passed over ${p.provider}: ${p.reason}`),
      ];
      session.print(
        { candidates: report.candidates, passedOver: report.passedOver },
        o.json,
        lines.join('\n'),
      );
    });

  const models = program.command('models').description('list, inspect and import model packs');
  models
    .command('list')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const packs = await session.open(globals()).listPacks();
      session.print(
        packs,
        o.json,
        packs
          .map(
            (p) =>
              `${p.id.padEnd(20)} ${p.ok ? `${p.task}, ${p.space}` : `BROKEN: ${p.error ?? ''}`}  ${p.name ?? ''}`,
          )
          .join('\n') || 'no packs found',
      );
    });
  models
    .command('info')
    .argument('<id>', 'pack id')
    .option('--json', 'print JSON')
    .action(async (id: string, o) => {
      const info = await session.open(globals()).packInfo(id);
      const networks = info.networks
        ? `Networks (precision: inputs → outputs):\n${networkSummary(info.networks, info.dir)}\n\n`
        : '';
      session.print(info, o.json, networks + (info.card ?? JSON.stringify(info.manifest, null, 2)));
      if (!info.ok) session.exitCode = EXIT.failed;
    });
  models
    .command('import')
    .argument('<folder>', 'a retrace pack or a diffusers/optimum ONNX Stable Diffusion folder')
    .option('--id <id>', 'id to give it')
    .option('--json', 'print JSON')
    .action(async (folder: string, o) => {
      const entry = await session.open(globals()).importPack(path.resolve(folder), o.id);
      session.print(entry, o.json, `imported ${entry.id} from ${entry.dir}`);
    });
  distributed.register(program);
  return program;
}

export interface CliIo {
  out?: (line: string) => void;
  err?: (line: string) => void;
  /** Installs SIGINT/SIGTERM handlers that cancel the job (default true). */
  handleSignals?: boolean;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[], io: CliIo = {}): Promise<number> {
  const out = io.out ?? ((s: string) => process.stdout.write(`${s}\n`));
  const err = io.err ?? ((s: string) => process.stderr.write(`${s}\n`));
  const session = new Session(out, err);
  const program = buildProgram(session, out, err);
  let interrupts = 0;
  const onSignal = () => {
    interrupts += 1;
    if (interrupts > 1) process.exit(EXIT.cancelled);
    err('retrace: cancelling (press Ctrl-C again to quit now)…');
    session.controller.abort();
  };
  if (io.handleSignals ?? true) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return session.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    session.reporter?.stop();
    if (isCancelled(e)) {
      err('retrace: cancelled; nothing partial was left behind.');
      return EXIT.cancelled;
    }
    err(`retrace: ${describeError(e)}`);
    return e instanceof RetraceError && e.code === 'BAD_INPUT' ? EXIT.usage : EXIT.failed;
  } finally {
    if (io.handleSignals ?? true) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    await session.close();
  }
}
