// Batch folders: find the images under the inputs (recursively if asked), mirror their
// sub-folders under the output folder, skip what is already done, and run every file through a
// three-stage pipeline (load → process → save) so that decoding the next file and encoding the
// previous one overlap the network work on the current one. One file's failure is recorded and
// the batch goes on; outputs appear only complete (the save stage writes atomically) and partial
// files left by a killed run are removed when the next run starts.
import { createHash } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  CancelledError,
  describeError,
  isCancelled,
  RetraceError,
  throwIfAborted,
} from '../errors.js';
import type { RunOptions } from '../progress.js';

/** Extensions Retrace reads and writes; anything else in a folder is not an image and is ignored. */
export const IMAGE_EXTENSIONS = new Set([
  '.png',
  '.jpg',
  '.jpeg',
  '.webp',
  '.tif',
  '.tiff',
  '.avif',
]);

/** Suffix of the temporary files an atomic write uses; see images/ for the writer. */
export const PARTIAL_MARKER = '.retrace-partial';

export interface BatchInput {
  /** Absolute path of the source file. */
  file: string;
  /** Path relative to the folder (or file) the user named, with '/' separators: the report's key. */
  relative: string;
}

export interface BatchItem {
  input: string;
  status: 'ok' | 'failed' | 'skipped';
  output?: string;
  error?: string;
  seconds: number;
}

export interface BatchStages<Loaded, Processed> {
  /** Reads and decodes a source (runs ahead of `process`). */
  load(input: BatchInput, signal: AbortSignal): Promise<Loaded>;
  /** The network work. */
  process(loaded: Loaded, input: BatchInput, signal: AbortSignal): Promise<Processed>;
  /** Encodes and writes atomically to `output` (runs behind `process`). */
  save(processed: Processed, output: string, input: BatchInput): Promise<void>;
}

export interface BatchOptions extends RunOptions {
  outputDir: string;
  /** Maps a source's relative path to its output's relative path (e.g. to change the extension). */
  outputName?: (relative: string) => string;
  skipExisting?: boolean;
  onItem?: (item: BatchItem, done: number, total: number) => void;
}

export interface BatchResult {
  items: BatchItem[];
  cancelled: boolean;
}

/**
 * The noise seed of one file of a batch: a pure function of the batch seed and the file's
 * relative path (the report's key), so a file gets the same noise, and so the same output bytes,
 * whether a local batch, a queue worker on any machine or a shard restores it, and in any order.
 * 48 bits of SHA-256 over both (a safe integer, as `GaussianField` takes).
 */
export function fileSeed(batchSeed: number, relative: string): number {
  if (!Number.isSafeInteger(batchSeed) || batchSeed < 0) {
    throw new RangeError(`batch seed must be a non-negative safe integer, got ${batchSeed}`);
  }
  const digest = createHash('sha256')
    .update(`retrace-file-seed/1\0${batchSeed}\0${relative}`)
    .digest();
  return digest.readUIntBE(0, 6);
}

function toPosix(p: string): string {
  return p.split(path.sep).join('/');
}

function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase());
}

async function walk(dir: string, recursive: boolean, out: string[]): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (recursive) await walk(full, recursive, out);
    } else if (e.isFile() && isImageFile(e.name) && !e.name.includes(PARTIAL_MARKER)) {
      out.push(full);
    }
  }
}

/**
 * Expands the paths a user gave into batch inputs. A folder contributes its images (recursively
 * if asked) with paths relative to it; a file contributes itself under its base name.
 */
export async function collectInputs(
  paths: readonly string[],
  recursive: boolean,
): Promise<BatchInput[]> {
  const inputs: BatchInput[] = [];
  const seen = new Set<string>();
  for (const given of paths) {
    const abs = path.resolve(given);
    let info;
    try {
      info = await stat(abs);
    } catch {
      throw new RetraceError('BAD_INPUT', `${given}: no such file or folder`);
    }
    const add = (file: string, relative: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      inputs.push({ file, relative });
    };
    if (info.isDirectory()) {
      const files: string[] = [];
      await walk(abs, recursive, files);
      for (const f of files) add(f, toPosix(path.relative(abs, f)));
    } else {
      add(abs, path.basename(abs));
    }
  }
  const byRelative = new Map<string, string>();
  for (const i of inputs) {
    const other = byRelative.get(i.relative);
    if (other) {
      throw new RetraceError(
        'BAD_INPUT',
        `${other} and ${i.file} would both be written as ${i.relative}; restore them in separate runs`,
      );
    }
    byRelative.set(i.relative, i.file);
  }
  return inputs;
}

/** Removes partial files a killed run left in the output tree (only files carrying our marker). */
export async function removePartialFiles(dir: string): Promise<number> {
  let removed = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) removed += await removePartialFiles(full);
    else if (e.name.includes(PARTIAL_MARKER)) {
      await rm(full, { force: true });
      removed += 1;
    }
  }
  return removed;
}

export async function exists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/**
 * Runs every input through the stages. Never throws for a single file's failure; throws only
 * when the batch cannot start. On cancel, in-flight work is abandoned (nothing partial is left)
 * and the result says `cancelled`.
 */
export async function runBatch<Loaded, Processed>(
  inputs: readonly BatchInput[],
  stages: BatchStages<Loaded, Processed>,
  options: BatchOptions,
): Promise<BatchResult> {
  const outputDir = path.resolve(options.outputDir);
  const sources = new Set(inputs.map((i) => path.resolve(i.file)));
  await removePartialFiles(outputDir);
  const controller = new AbortController();
  const outer = options.signal;
  const onAbort = () => controller.abort();
  outer?.addEventListener('abort', onAbort, { once: true });
  const signal = controller.signal;

  const items: BatchItem[] = new Array(inputs.length);
  let done = 0;
  const record = (index: number, item: BatchItem) => {
    items[index] = item;
    done += 1;
    options.onItem?.(item, done, inputs.length);
    options.onProgress?.({
      phase: 'restoring folder',
      step: done,
      total: inputs.length,
      detail: item.input,
    });
  };

  type Pending = { index: number; output: string; started: number; loaded: Promise<Loaded> };
  const plan = inputs.map((input, index) => {
    const relOut = options.outputName ? options.outputName(input.relative) : input.relative;
    return { index, input, output: path.join(outputDir, ...relOut.split('/')) };
  });

  // The save of file i runs while file i+1 is processed; at most one save is in flight.
  let saving: Promise<void> = Promise.resolve();
  const startLoad = (k: number): Pending | undefined => {
    const p = plan[k];
    if (!p) return undefined;
    const loaded = p.input ? stages.load(p.input, signal) : Promise.reject(new Error('no input'));
    loaded.catch(() => undefined); // observed later; avoid an unhandled rejection meanwhile
    return { index: p.index, output: p.output, started: performance.now(), loaded };
  };

  const seconds = (started: number) => (performance.now() - started) / 1000;
  let cancelled = false;
  let next = 0;
  const advanceToWork = async (): Promise<Pending | undefined> => {
    while (next < plan.length) {
      const p = plan[next] as (typeof plan)[number];
      next += 1;
      if (sources.has(path.resolve(p.output))) {
        record(p.index, {
          input: p.input.relative,
          status: 'failed',
          error: `${p.output}: the output would overwrite its source; choose another output folder`,
          seconds: 0,
        });
        continue;
      }
      if (options.skipExisting && (await exists(p.output))) {
        record(p.index, {
          input: p.input.relative,
          status: 'skipped',
          output: p.output,
          seconds: 0,
        });
        continue;
      }
      return startLoad(p.index);
    }
    return undefined;
  };

  try {
    let current = await advanceToWork();
    while (current) {
      throwIfAborted(signal);
      const job = current;
      const input = plan[job.index]?.input as BatchInput;
      let processed: Processed | undefined;
      let failure: string | undefined;
      try {
        const loaded = await job.loaded;
        current = await advanceToWork(); // start decoding the next file before the network work
        processed = await stages.process(loaded, input, signal);
      } catch (err) {
        if (isCancelled(err) || signal.aborted) throw new CancelledError();
        // Name the file once: most errors from the image layer already carry its path.
        const message = describeError(err);
        failure =
          message.includes(input.file) || message.includes(input.relative)
            ? message
            : `${input.relative}: ${message}`;
        if (current === job) current = await advanceToWork();
      }
      if (failure !== undefined) {
        record(job.index, {
          input: input.relative,
          status: 'failed',
          error: failure,
          seconds: seconds(job.started),
        });
        continue;
      }
      const previous = saving;
      saving = (async () => {
        await previous;
        try {
          await stages.save(processed as Processed, job.output, input);
          record(job.index, {
            input: input.relative,
            status: 'ok',
            output: job.output,
            seconds: seconds(job.started),
          });
        } catch (err) {
          record(job.index, {
            input: input.relative,
            status: 'failed',
            error: `${input.relative}: ${describeError(err)}`,
            seconds: seconds(job.started),
          });
        }
      })();
    }
    await saving;
  } catch (err) {
    if (!isCancelled(err)) throw err;
    cancelled = true;
    await saving.catch(() => undefined);
    await removePartialFiles(outputDir);
  } finally {
    outer?.removeEventListener('abort', onAbort);
  }
  return { items: items.filter((i): i is BatchItem => i !== undefined), cancelled };
}
