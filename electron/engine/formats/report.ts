// Batch reports: one JSON object (a summary, one entry per input, and whatever else the caller
// adds) and a CSV beside it for spreadsheets, both written atomically so a report is never half
// there. The CSV follows RFC 4180: CRLF line ends, fields with commas, quotes or line breaks quoted.
import path from 'node:path';
import { RetraceError } from '../errors.js';
import type { BatchItem } from '../jobs/batch.js';
import { writeFileAtomic } from './atomic.js';

export interface BatchReportInput {
  items: readonly (BatchItem | undefined)[];
  /** When the batch began and ended (Date or ISO string). */
  started?: Date | string;
  finished?: Date | string;
  /** The pack the batch ran with. */
  model?: string;
  /** Wall seconds of the whole batch; by default finished − started, else the items' sum. */
  seconds?: number;
  [extra: string]: unknown;
}

export interface BatchReportSummary {
  total: number;
  ok: number;
  failed: number;
  skipped: number;
  seconds: number;
  started: string | null;
  finished: string | null;
  model: string | null;
}

export const CSV_COLUMNS = ['input', 'status', 'output', 'error', 'seconds'] as const;

function iso(v: Date | string | undefined): string | null {
  if (v === undefined) return null;
  return v instanceof Date ? v.toISOString() : v;
}

export function summarize(result: BatchReportInput): BatchReportSummary {
  const items = result.items.filter((i): i is BatchItem => i !== undefined);
  const count = (s: BatchItem['status']) => items.filter((i) => i.status === s).length;
  const started = iso(result.started);
  const finished = iso(result.finished);
  let seconds = result.seconds;
  if (seconds === undefined && started && finished) {
    const span = (Date.parse(finished) - Date.parse(started)) / 1000;
    if (Number.isFinite(span)) seconds = span;
  }
  seconds ??= items.reduce((s, i) => s + i.seconds, 0);
  return {
    total: items.length,
    ok: count('ok'),
    failed: count('failed'),
    skipped: count('skipped'),
    seconds,
    started,
    finished,
    model: result.model ?? null,
  };
}

/** One CSV field, quoted when RFC 4180 requires it. */
export function csvField(value: string | number | undefined): string {
  if (value === undefined) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function batchReportCsv(items: readonly (BatchItem | undefined)[]): string {
  const rows = [CSV_COLUMNS.join(',')];
  for (const item of items) {
    if (!item) continue;
    rows.push(
      [item.input, item.status, item.output, item.error, item.seconds.toFixed(3)]
        .map(csvField)
        .join(','),
    );
  }
  return rows.join('\r\n') + '\r\n';
}

/**
 * Writes `jsonFile` and the CSV beside it (same base name, `.csv`). Returns both paths.
 */
export async function writeBatchReport(
  jsonFile: string,
  result: BatchReportInput,
): Promise<{ json: string; csv: string }> {
  if (path.extname(jsonFile).toLowerCase() !== '.json') {
    throw new RetraceError('BAD_INPUT', `${jsonFile}: a report file must end in .json`);
  }
  const { items, started: _s, finished: _f, model: _m, seconds: _sec, ...extra } = result;
  const present = items.filter((i): i is BatchItem => i !== undefined);
  const report = { summary: summarize(result), ...extra, items: present };
  const csvFile = jsonFile.slice(0, -path.extname(jsonFile).length) + '.csv';
  await writeFileAtomic(jsonFile, JSON.stringify(report, null, 2) + '\n');
  await writeFileAtomic(csvFile, batchReportCsv(present));
  return { json: jsonFile, csv: csvFile };
}
