// `retrace report merge`: joins the reports of the shards of one batch (or of queue runs) into
// the report one run over the whole folder would have written: the same items in the same order
// (the order a local batch walks a folder: name by name, folder by folder), the summary counted
// again, the earliest start and the latest end. Reports that disagree on the pack or seed, that
// list a file twice, or that leave a shard out are refused with the file at fault named.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { RetraceError } from '../errors.js';
import { writeBatchReport } from '../formats/report.js';
import type { BatchItem } from '../jobs/batch.js';
import { formatShard, type Shard } from './shard.js';

/** A report item: the batch fields, and what a queue run adds (attempts, why it was retried). */
export type ReportItem = BatchItem & { attempts?: number; retried?: string };

interface ReportFile {
  summary?: {
    model?: string | null;
    started?: string | null;
    finished?: string | null;
  };
  items?: unknown;
  cancelled?: unknown;
  seed?: unknown;
  shard?: unknown;
  [extra: string]: unknown;
}

/** Orders relative paths the way a local batch visits them (segment by segment, by name). */
export function compareRelative(a: string, b: string): number {
  const x = a.split('/');
  const y = b.split('/');
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i] as string;
    const q = y[i] as string;
    if (p !== q) return p < q ? -1 : 1;
  }
  return x.length - y.length;
}

function isItem(v: unknown): v is ReportItem {
  if (!v || typeof v !== 'object') return false;
  const o = v as Record<string, unknown>;
  return (
    typeof o.input === 'string' &&
    (o.status === 'ok' || o.status === 'failed' || o.status === 'skipped') &&
    typeof o.seconds === 'number'
  );
}

function isShard(v: unknown): v is Shard {
  if (!v || typeof v !== 'object') return false;
  const o = v as Record<string, unknown>;
  return Number.isSafeInteger(o.index) && Number.isSafeInteger(o.count);
}

export interface MergeResult {
  json: string;
  csv: string;
  items: ReportItem[];
  reports: number;
}

/** Reads, checks and joins `files`; writes the result to `out` (JSON, and the CSV beside it). */
export async function mergeReports(files: readonly string[], out: string): Promise<MergeResult> {
  if (files.length === 0) throw new RetraceError('BAD_INPUT', 'report merge: no reports given');
  const seen = new Map<string, string>();
  const items: ReportItem[] = [];
  const shards = new Map<number, string>();
  let shardCount: number | undefined;
  let unsharded = 0;
  let model: string | null | undefined;
  let seed: unknown;
  let cancelled = false;
  let started: string | undefined;
  let finished: string | undefined;
  let first: string | undefined;
  const extra: Record<string, unknown> = {};
  for (const file of files) {
    let report: ReportFile;
    try {
      report = JSON.parse(await readFile(file, 'utf8')) as ReportFile;
    } catch (err) {
      const why = err instanceof SyntaxError ? 'not JSON' : (err as Error).message;
      throw new RetraceError('BAD_FILE', `${file}: cannot read the report (${why})`);
    }
    if (!report || typeof report !== 'object' || !Array.isArray(report.items)) {
      throw new RetraceError('BAD_FILE', `${file}: not a retrace report (no "items" list)`);
    }
    const m = report.summary?.model ?? null;
    if (first === undefined) {
      first = file;
      model = m;
      seed = report.seed;
    } else {
      if (m !== model)
        throw new RetraceError(
          'MISMATCH',
          `${file}: restored with pack ${String(m)}, but ${first} with ${String(model)}`,
        );
      if (report.seed !== seed)
        throw new RetraceError(
          'MISMATCH',
          `${file}: seed ${String(report.seed)}, but ${first} has seed ${String(seed)}`,
        );
    }
    if (report.shard !== undefined) {
      if (!isShard(report.shard))
        throw new RetraceError('BAD_FILE', `${file}: its "shard" is not {index, count}`);
      if (shardCount !== undefined && report.shard.count !== shardCount)
        throw new RetraceError(
          'MISMATCH',
          `${file}: shard ${formatShard(report.shard)} is of another split than ${shardCount} shards`,
        );
      shardCount = report.shard.count;
      const other = shards.get(report.shard.index);
      if (other)
        throw new RetraceError(
          'BAD_INPUT',
          `${file} and ${other} are both shard ${formatShard(report.shard)}`,
        );
      shards.set(report.shard.index, file);
    } else unsharded += 1;
    if (report.cancelled === true) cancelled = true;
    const s = report.summary?.started ?? undefined;
    const f = report.summary?.finished ?? undefined;
    if (s && (started === undefined || s < started)) started = s;
    if (f && (finished === undefined || f > finished)) finished = f;
    for (const [key, value] of Object.entries(report)) {
      if (['summary', 'items', 'cancelled', 'seed', 'shard'].includes(key)) continue;
      if (!(key in extra)) extra[key] = value;
    }
    for (const [n, item] of (report.items as unknown[]).entries()) {
      if (!isItem(item))
        throw new RetraceError('BAD_FILE', `${file}: item ${n + 1} is not a report item`);
      const other = seen.get(item.input);
      if (other)
        throw new RetraceError(
          'BAD_INPUT',
          `${item.input} is in both ${other} and ${file}: the reports overlap`,
        );
      seen.set(item.input, file);
      items.push(item);
    }
  }
  if (shardCount !== undefined) {
    if (unsharded > 0)
      throw new RetraceError(
        'BAD_INPUT',
        'report merge: some reports are shards and some are not; merge one split at a time',
      );
    const missing: string[] = [];
    for (let i = 1; i <= shardCount; i++)
      if (!shards.has(i)) missing.push(formatShard({ index: i, count: shardCount }));
    if (missing.length > 0)
      throw new RetraceError(
        'BAD_INPUT',
        `report merge: shard${missing.length > 1 ? 's' : ''} ${missing.join(', ')} missing`,
      );
  }
  items.sort((a, b) => compareRelative(a.input, b.input));
  const written = await writeBatchReport(path.resolve(out), {
    items,
    cancelled,
    ...(model !== null && model !== undefined ? { model } : {}),
    seed,
    ...extra,
    ...(started !== undefined ? { started } : {}),
    ...(finished !== undefined ? { finished } : {}),
  });
  return { ...written, items, reports: files.length };
}
