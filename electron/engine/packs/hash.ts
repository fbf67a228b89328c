// sha256 of pack files, streamed (networks can be gigabytes) and cached by (path, size, mtime):
// a pack is verified once, and later loads of the unchanged files cost a stat each. The cache can
// be kept in a JSON file (the registry keeps one in the user folder) so the next process gains too.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { RetraceError } from '../errors.js';
import { writeFileAtomic } from '../formats/atomic.js';

/** Streams a file through sha256. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
    }
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new RetraceError('BAD_PACK', `${file}: cannot read (${reason})`, { cause: err });
  }
  return hash.digest('hex');
}

const cacheFileSchema = z.object({
  format: z.literal('retrace-hash-cache/1'),
  entries: z.record(
    z.string(),
    z.object({ size: z.number(), mtimeMs: z.number(), sha256: z.string() }),
  ),
});

type Entry = { size: number; mtimeMs: number; sha256: string };

export class HashCache {
  private entries = new Map<string, Entry>();
  private loaded = false;
  private dirty = false;

  /** @param file where to keep the cache between processes; memory only when absent */
  constructor(private readonly file?: string) {}

  /** The file's sha256, from the cache when its size and mtime are unchanged. */
  async sha256(file: string): Promise<string> {
    await this.load();
    const abs = path.resolve(file);
    let info;
    try {
      info = await stat(abs);
    } catch (err) {
      throw new RetraceError('BAD_PACK', `${abs}: no such file`, { cause: err });
    }
    const hit = this.entries.get(abs);
    if (hit && hit.size === info.size && hit.mtimeMs === info.mtimeMs) return hit.sha256;
    const sha256 = await sha256File(abs);
    this.entries.set(abs, { size: info.size, mtimeMs: info.mtimeMs, sha256 });
    this.dirty = true;
    await this.save();
    return sha256;
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    if (!this.file) return;
    try {
      const parsed = cacheFileSchema.safeParse(JSON.parse(await readFile(this.file, 'utf8')));
      // A missing or unreadable cache only costs re-hashing; it is rebuilt on the next save.
      if (parsed.success) this.entries = new Map(Object.entries(parsed.data.entries));
    } catch {
      this.entries = new Map();
    }
  }

  private async save(): Promise<void> {
    if (!this.file || !this.dirty) return;
    this.dirty = false;
    const data = { format: 'retrace-hash-cache/1', entries: Object.fromEntries(this.entries) };
    try {
      await mkdir(path.dirname(this.file), { recursive: true });
      await writeFileAtomic(this.file, JSON.stringify(data) + '\n');
    } catch {
      // The cache is an optimisation: a read-only user folder must not stop a pack from loading.
    }
  }
}

/** The process-wide cache used when a caller does not bring its own. */
export const defaultHashCache = new HashCache();
