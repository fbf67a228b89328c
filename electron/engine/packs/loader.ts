// Model packs from disk: `loadPack` reads and checks a `retrace-pack/1` folder (schema, files,
// sha256), `importDiffusersFolder` describes an ONNX Stable Diffusion folder the same way, and
// `PackRegistry` finds packs (bundled, the user's, imported folders recorded in imports.json) and
// lists broken ones with their error instead of hiding them. What comes out is the `ModelSource`
// the pipelines take, with absolute file paths and a lazy tokenizer.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { describeError, RetraceError } from '../errors.js';
import { writeFileAtomic } from '../formats/atomic.js';
import type { ModelSource, TextTokenizer } from '../pipelines/model.js';
import { describeDiffusersFolder } from './diffusers.js';
import { checkNetworks, describeNetworks } from './networks.js';
import { defaultHashCache, HashCache } from './hash.js';
import { packManifestSchema, type PackManifest } from './schema.js';
import { loadClipTokenizer, loadTokenizerJson } from './tokenizers.js';

export { describeDiffusersFolder, idFromFolderName } from './diffusers.js';

export type PackOrigin = 'bundled' | 'user' | 'imported';

export interface LoadedPack extends ModelSource {
  dir: string;
  origin: PackOrigin;
  /** MODEL_CARD.md (or the manifest's modelCard) when the file is there. */
  cardFile?: string;
  /** eval.json when the pack ships one. */
  evalFile?: string;
}

export interface LoadPackOptions {
  /** Check each component's sha256 against the manifest (cached by path, size and mtime). */
  verify?: boolean;
  origin?: PackOrigin;
  hashCache?: HashCache;
}

type ComponentKey = keyof PackManifest['components'];
const NETWORKS = ['unet', 'textEncoder', 'vaeEncoder', 'vaeDecoder'] as const;

async function isFile(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined))?.isFile() ?? false;
}

async function isDir(dir: string): Promise<boolean> {
  return (await stat(dir).catch(() => undefined))?.isDirectory() ?? false;
}

/**
 * Every file a pack uses must really live in its folder: a symlink (or a component path) that
 * resolves outside would let a pack read any file — a model card linked to an SSH key would be
 * sent to the window as text. `field` names the manifest field for the error.
 */
async function checkInside(dir: string, file: string, where: string, field: string): Promise<void> {
  const [root, real] = await Promise.all([realpath(dir), realpath(file)]);
  const rel = path.relative(root, real);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    throw new RetraceError(
      'BAD_PACK',
      `${where}: ${field}: ${file} resolves to ${real}, outside the pack folder ${root}; copy the file into the folder instead of linking it`,
    );
  }
}

/** Reads and schema-checks pack.json; the error names the file and the first bad fields. */
export async function readManifest(packJson: string): Promise<PackManifest> {
  let text: string;
  try {
    text = await readFile(packJson, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new RetraceError(
      'BAD_PACK',
      missing ? `${packJson}: no such file` : `${packJson}: cannot read (${String(err)})`,
      { cause: err },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new RetraceError('BAD_PACK', `${packJson}: not valid JSON (${(err as Error).message})`, {
      cause: err,
    });
  }
  const parsed = packManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => {
      const where = i.path.length > 0 ? i.path.join('.') : '(top level)';
      return `${where}: ${i.message}`;
    });
    const more = parsed.error.issues.length > 3 ? ` (+${parsed.error.issues.length - 3} more)` : '';
    throw new RetraceError('BAD_PACK', `${packJson}: ${issues.join('; ')}${more}`);
  }
  return parsed.data;
}

function tokenizerLoader(
  dir: string,
  spec: NonNullable<PackManifest['components']['tokenizer']>,
): () => Promise<TextTokenizer> {
  const file = path.join(dir, spec.file);
  const config = spec.config ? path.join(dir, spec.config) : undefined;
  if (spec.merges) {
    const merges = path.join(dir, spec.merges);
    return () =>
      loadClipTokenizer(
        config ? { vocab: file, merges, config } : { vocab: file, merges },
        spec.maxLength,
      );
  }
  return () => loadTokenizerJson(file, spec.maxLength, config ? { config } : {});
}

/**
 * Builds the descriptor from a checked manifest: every component file must exist, and with
 * `verify` its sha256 must match the manifest's. The unet's sha256 is always known (computed
 * when the manifest omits it) because inversion files record it.
 */
async function describePack(
  dir: string,
  manifest: PackManifest,
  where: string,
  options: LoadPackOptions & { origin: PackOrigin; stepsOffset?: number },
): Promise<LoadedPack> {
  const cache = options.hashCache ?? defaultHashCache;
  const resolved: Partial<Record<ComponentKey, string>> = {};
  const extra: string[] = [];
  for (const [key, comp] of Object.entries(manifest.components) as [
    ComponentKey,
    { file: string; sha256?: string; merges?: string; config?: string },
  ][]) {
    const file = path.join(dir, comp.file);
    if (!(await isFile(file))) {
      throw new RetraceError(
        'BAD_PACK',
        `${where}: components.${key}.file: ${file} does not exist`,
      );
    }
    await checkInside(dir, file, where, `components.${key}.file`);
    for (const [field, rel] of [
      ['merges', comp.merges],
      ['config', comp.config],
    ] as const) {
      if (rel === undefined) continue;
      const other = path.join(dir, rel);
      if (!(await isFile(other))) {
        throw new RetraceError(
          'BAD_PACK',
          `${where}: components.${key}.${field}: ${other} does not exist`,
        );
      }
      await checkInside(dir, other, where, `components.${key}.${field}`);
      extra.push(other);
    }
    resolved[key] = file;
    if (options.verify !== false && comp.sha256) {
      const actual = await cache.sha256(file);
      if (actual !== comp.sha256) {
        throw new RetraceError(
          'BAD_PACK',
          `${file}: sha256 mismatch (pack.json says ${comp.sha256}, the file has ${actual}); the file is damaged or was replaced`,
        );
      }
    }
  }
  const unet = resolved.unet as string;
  const unetSha256 = manifest.components.unet.sha256 ?? (await cache.sha256(unet));
  const files: ModelSource['files'] = { unet };
  for (const key of NETWORKS) {
    const file = resolved[key];
    if (file && key !== 'unet') files[key] = file;
  }
  const pack: LoadedPack = {
    id: manifest.id,
    manifest,
    unetSha256,
    files,
    dir,
    origin: options.origin,
  };
  if (manifest.components.tokenizer) {
    pack.loadTokenizer = tokenizerLoader(dir, manifest.components.tokenizer);
  }
  if (options.stepsOffset) pack.stepsOffset = options.stepsOffset;
  const card = path.join(dir, manifest.modelCard ?? 'MODEL_CARD.md');
  if (await isFile(card)) {
    await checkInside(dir, card, where, manifest.modelCard ? 'modelCard' : 'MODEL_CARD.md');
    pack.cardFile = card;
  }
  const evalFile = path.join(dir, 'eval.json');
  if (await isFile(evalFile)) {
    await checkInside(dir, evalFile, where, 'eval.json');
    pack.evalFile = evalFile;
  }
  return pack;
}

/** Loads a `retrace-pack/1` folder (pack.json + its files). */
export async function loadPack(dir: string, options: LoadPackOptions = {}): Promise<LoadedPack> {
  const root = path.resolve(dir);
  if (!(await isDir(root))) throw new RetraceError('BAD_PACK', `${root}: no such pack folder`);
  const packJson = path.join(root, 'pack.json');
  const manifest = await readManifest(packJson);
  return describePack(root, manifest, packJson, { ...options, origin: options.origin ?? 'user' });
}

/**
 * Describes a diffusers/optimum ONNX Stable Diffusion folder as a pack (origin 'imported'):
 * schedule, latent, resolution and tokenizer from its configs, timestep dtype from the unet's
 * graph, the unet's sha256 computed (streamed, cached).
 */
export async function importDiffusersFolder(
  dir: string,
  options: { id?: string; hashCache?: HashCache } = {},
): Promise<LoadedPack> {
  const root = path.resolve(dir);
  const { manifest, stepsOffset } = await describeDiffusersFolder(
    root,
    options.id !== undefined ? { id: options.id } : {},
  );
  return describePack(root, manifest, path.join(root, 'model_index.json'), {
    origin: 'imported',
    stepsOffset,
    ...(options.hashCache ? { hashCache: options.hashCache } : {}),
  });
}

/** Loads whatever a folder is: a pack (pack.json) or a Stable Diffusion export (model_index.json). */
export async function loadFolder(
  dir: string,
  options: LoadPackOptions & { id?: string } = {},
): Promise<LoadedPack> {
  const root = path.resolve(dir);
  if (existsSync(path.join(root, 'pack.json'))) return loadPack(root, options);
  if (existsSync(path.join(root, 'model_index.json'))) {
    const pack = await importDiffusersFolder(root, {
      ...(options.id !== undefined ? { id: options.id } : {}),
      ...(options.hashCache ? { hashCache: options.hashCache } : {}),
    });
    return options.origin ? { ...pack, origin: options.origin } : pack;
  }
  if (!(await isDir(root))) throw new RetraceError('BAD_PACK', `${root}: no such folder`);
  throw new RetraceError(
    'BAD_PACK',
    `${root}: neither a Retrace pack (pack.json) nor a diffusers ONNX folder (model_index.json)`,
  );
}

// ---------------------------------------------------------------------------------------------
// Registry

export interface PackListEntry {
  id: string;
  name: string;
  origin: PackOrigin;
  dir: string;
  ok: boolean;
  /** Why the pack cannot be used (ok = false). */
  error?: string;
  /** Known for every pack that loaded; for a broken one only if its pack.json says. */
  task?: PackManifest['task'];
  space?: PackManifest['space'];
  tuning?: PackManifest['tuning'];
  defaults?: PackManifest['defaults'];
  resolution?: PackManifest['resolution'];
}

const importsSchema = z.object({
  format: z.literal('retrace-imports/1'),
  imports: z.array(
    z.object({
      id: z.string(),
      dir: z.string(),
      importedAt: z.string(),
    }),
  ),
});
type ImportsFile = z.infer<typeof importsSchema>;

interface Candidate {
  dir: string;
  origin: PackOrigin;
  /** The id an imported folder was recorded under. */
  id?: string;
}

/** Folder names the factory uses while it swaps a pack in (`x.tmp`, `x.old`) or hidden ones. */
function isScratchFolder(name: string): boolean {
  return name.startsWith('.') || name.endsWith('.tmp') || name.endsWith('.old');
}

function looksLikePath(s: string): boolean {
  return path.isAbsolute(s) || s.startsWith('.') || s.includes('/') || s.includes(path.sep);
}

export class PackRegistry {
  readonly bundledDirs: string[];
  readonly userDir: string;
  private readonly hashCache: HashCache;

  constructor(options: { bundledDirs: string[]; userDir: string; hashCache?: HashCache }) {
    this.bundledDirs = options.bundledDirs.map((d) => path.resolve(d));
    this.userDir = path.resolve(options.userDir);
    // Kept on disk by default, so a gigabyte unet is hashed once, not once per process.
    this.hashCache = options.hashCache ?? new HashCache(path.join(this.userDir, 'hash-cache.json'));
  }

  get importsFile(): string {
    return path.join(this.userDir, 'imports.json');
  }

  /** Folder of packs the user copied in (each a pack.json folder). */
  get userPacksDir(): string {
    return path.join(this.userDir, 'packs');
  }

  /** Every pack found, broken ones included with their error; sorted by id. */
  async list(): Promise<PackListEntry[]> {
    const entries: PackListEntry[] = [];
    const seen = new Map<string, string>();
    let importsError: string | undefined;
    let candidates: Candidate[];
    try {
      candidates = await this.candidates();
    } catch (err) {
      importsError = describeError(err);
      candidates = await this.folderCandidates();
    }
    for (const c of candidates) {
      const entry = await this.entryFor(c);
      const other = seen.get(entry.id);
      if (other !== undefined && entry.ok) {
        entry.ok = false;
        entry.error = `duplicate pack id '${entry.id}' (also in ${other})`;
      }
      if (!seen.has(entry.id)) seen.set(entry.id, entry.dir);
      entries.push(entry);
    }
    if (importsError !== undefined) {
      entries.push({
        id: 'imports.json',
        name: 'imported folders',
        origin: 'imported',
        dir: this.userDir,
        ok: false,
        error: importsError,
      });
    }
    return entries.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** A pack by id, or a folder path (pack.json or Stable Diffusion layout). */
  async get(idOrPath: string): Promise<LoadedPack> {
    if (looksLikePath(idOrPath) && (await isDir(path.resolve(idOrPath)))) {
      return loadFolder(idOrPath, { hashCache: this.hashCache });
    }
    const candidates = await this.candidates();
    const known: string[] = [];
    for (const c of candidates) {
      const id = c.id ?? (await this.peekId(c.dir)) ?? path.basename(c.dir);
      if (id === idOrPath) return this.load(c);
      known.push(id);
    }
    if (looksLikePath(idOrPath)) {
      throw new RetraceError('BAD_INPUT', `${path.resolve(idOrPath)}: no such pack folder`);
    }
    const list = [...new Set(known)].sort().join(', ') || 'none';
    throw new RetraceError('BAD_INPUT', `no pack '${idOrPath}' (known: ${list})`);
  }

  /**
   * Validates a folder (Stable Diffusion export or pack folder) and records it in imports.json
   * so that it is listed from now on. Nothing is copied.
   */
  async importFolder(dir: string, options: { id?: string } = {}): Promise<LoadedPack> {
    const root = path.resolve(dir);
    const pack = await loadFolder(root, {
      origin: 'imported',
      hashCache: this.hashCache,
      ...(options.id !== undefined ? { id: options.id } : {}),
    });
    if (
      existsSync(path.join(root, 'pack.json')) &&
      options.id !== undefined &&
      options.id !== pack.id
    ) {
      throw new RetraceError(
        'BAD_INPUT',
        `${root}: a pack folder keeps the id in its pack.json ('${pack.id}'); --id cannot rename it`,
      );
    }
    // A folder whose networks Retrace cannot run is refused now, not at its first job.
    checkNetworks(await describeNetworks(pack));
    const imports = await this.readImports();
    for (const c of await this.folderCandidates()) {
      if ((await this.peekId(c.dir)) === pack.id) {
        throw new RetraceError(
          'BAD_INPUT',
          `pack id '${pack.id}' is already used by ${c.dir}; choose another id`,
        );
      }
    }
    const clash = imports.imports.find((i) => i.id === pack.id && path.resolve(i.dir) !== root);
    if (clash) {
      throw new RetraceError(
        'BAD_INPUT',
        `pack id '${pack.id}' is already used by ${clash.dir}; choose another id`,
      );
    }
    const rest = imports.imports.filter((i) => path.resolve(i.dir) !== root);
    rest.push({ id: pack.id, dir: root, importedAt: new Date().toISOString() });
    await this.writeImports({ format: 'retrace-imports/1', imports: rest });
    return { ...pack, origin: 'imported' };
  }

  /** Forgets an imported folder (its files stay where they are). */
  async remove(id: string): Promise<void> {
    const imports = await this.readImports();
    const kept = imports.imports.filter((i) => i.id !== id);
    if (kept.length === imports.imports.length) {
      const entry = (await this.list()).find((e) => e.id === id);
      if (entry) {
        throw new RetraceError(
          'BAD_INPUT',
          `pack '${id}' is ${entry.origin === 'bundled' ? 'bundled with Retrace' : `a folder in ${this.userPacksDir}`} and cannot be removed here`,
        );
      }
      throw new RetraceError('BAD_INPUT', `no imported pack '${id}'`);
    }
    await this.writeImports({ ...imports, imports: kept });
  }

  private async load(c: Candidate): Promise<LoadedPack> {
    const options = { origin: c.origin, hashCache: this.hashCache };
    return loadFolder(c.dir, c.id !== undefined ? { ...options, id: c.id } : options);
  }

  private async entryFor(c: Candidate): Promise<PackListEntry> {
    try {
      const pack = await this.load(c);
      const m = pack.manifest;
      const entry: PackListEntry = {
        id: pack.id,
        name: m.name,
        origin: c.origin,
        dir: c.dir,
        ok: true,
        task: m.task,
        space: m.space,
        defaults: m.defaults,
        resolution: m.resolution,
      };
      if (m.tuning) entry.tuning = m.tuning;
      return entry;
    } catch (err) {
      const raw = await this.peekManifest(c.dir);
      const entry: PackListEntry = {
        id: c.id ?? (typeof raw?.id === 'string' ? raw.id : path.basename(c.dir)),
        name: typeof raw?.name === 'string' ? raw.name : path.basename(c.dir),
        origin: c.origin,
        dir: c.dir,
        ok: false,
        error: describeError(err),
      };
      if (raw?.task === 'text-to-image' || raw?.task === 'restoration') entry.task = raw.task;
      if (raw?.space === 'latent' || raw?.space === 'pixel') entry.space = raw.space;
      return entry;
    }
  }

  private async peekManifest(dir: string): Promise<Record<string, unknown> | undefined> {
    try {
      const raw: unknown = JSON.parse(await readFile(path.join(dir, 'pack.json'), 'utf8'));
      return typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  }

  private async peekId(dir: string): Promise<string | undefined> {
    const raw = await this.peekManifest(dir);
    return typeof raw?.id === 'string' ? raw.id : undefined;
  }

  /** Pack folders under the bundled dirs and the user's packs folder. */
  private async folderCandidates(): Promise<Candidate[]> {
    const out: Candidate[] = [];
    const scan = async (root: string, origin: PackOrigin) => {
      const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
      const names = entries
        .filter((e) => e.isDirectory() && !isScratchFolder(e.name))
        .map((e) => e.name)
        .sort();
      for (const name of names) {
        const dir = path.join(root, name);
        if (existsSync(path.join(dir, 'pack.json'))) out.push({ dir, origin });
      }
    };
    for (const d of this.bundledDirs) await scan(d, 'bundled');
    await scan(this.userPacksDir, 'user');
    return out;
  }

  private async candidates(): Promise<Candidate[]> {
    const out = await this.folderCandidates();
    for (const i of (await this.readImports()).imports) {
      out.push({ dir: i.dir, origin: 'imported', id: i.id });
    }
    return out;
  }

  private async readImports(): Promise<ImportsFile> {
    let text: string;
    try {
      text = await readFile(this.importsFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return { format: 'retrace-imports/1', imports: [] };
      }
      throw new RetraceError('BAD_FILE', `${this.importsFile}: cannot read (${String(err)})`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw new RetraceError('BAD_FILE', `${this.importsFile}: not valid JSON`);
    }
    const parsed = importsSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new RetraceError(
        'BAD_FILE',
        `${this.importsFile}: ${issue?.path.join('.') || '(top level)'}: ${issue?.message ?? 'invalid'}`,
      );
    }
    return parsed.data;
  }

  private async writeImports(data: ImportsFile): Promise<void> {
    await mkdir(this.userDir, { recursive: true });
    await writeFileAtomic(this.importsFile, JSON.stringify(data, null, 2) + '\n');
  }
}

/**
 * Where bundled packs live: `<repo>/models/packs`, found by walking up from this module (so it
 * works from the sources under tsx/vitest and from `dist/`), plus the folders in RETRACE_PACKS
 * (separated by the platform's path delimiter).
 */
export function defaultPackDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  let at = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = path.join(at, 'models', 'packs');
    if (existsSync(candidate) && existsSync(path.join(at, 'package.json'))) {
      dirs.push(candidate);
      break;
    }
    const parent = path.dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const d of (env.RETRACE_PACKS ?? '').split(path.delimiter)) {
    if (d.trim() !== '') dirs.push(path.resolve(d.trim()));
  }
  return [...new Set(dirs)];
}
