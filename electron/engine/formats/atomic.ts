// Atomic file writes: the bytes go to a temporary file beside the target (same folder, so the
// rename cannot cross file systems), are flushed, then renamed over the target. A reader sees the
// old file or the new one, never half of one; a killed process leaves only a temporary file whose
// name carries the batch runner's partial-file marker, so the next batch run removes it.
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { RetraceError } from '../errors.js';
import { PARTIAL_MARKER } from '../jobs/batch.js';

/** The temporary name used while `file` is being written. */
export function partialName(file: string): string {
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  return path.join(path.dirname(file), `.${path.basename(file)}${PARTIAL_MARKER}-${tag}`);
}

/** Writes `chunks` (in order) to `file` atomically. */
export async function writeFileAtomic(
  file: string,
  chunks: string | Uint8Array | readonly (string | Uint8Array)[],
): Promise<void> {
  const temp = partialName(file);
  const list = typeof chunks === 'string' || chunks instanceof Uint8Array ? [chunks] : chunks;
  try {
    const handle = await open(temp, 'wx');
    try {
      // writeFile loops until every byte is written; consecutive calls append.
      for (const chunk of list) await handle.writeFile(chunk);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    const reason = err instanceof Error ? err.message : String(err);
    throw new RetraceError('BAD_FILE', `${file}: cannot write (${reason})`, { cause: err });
  }
}
