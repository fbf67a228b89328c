// Inversion files (`*.inversion.safetensors`, ARCHITECTURE.md): the BDIA pair (z_top, z_next) as
// F64 tensors, an optional U8 RGB preview, and string metadata naming the pack, the timestep grid
// and the source. They open in any safetensors reader. On reading, a file is refused with the
// reason when it is not safetensors, is damaged (a hash over the tensor bytes and one over the
// metadata, and a header in canonical form, so that any one-byte change is caught), carries another
// format tag or misses a field, or belongs to another pack or another grid.
import { createHash } from 'node:crypto';
import { RetraceError } from '../errors.js';
import { QUANTUM } from '../schedulers/bdia.js';
import { parseSafetensors, readBytes, serializeSafetensors, type Tensor } from './safetensors.js';
import { writeFileAtomic } from './atomic.js';

export const INVERSION_FORMAT = 'retrace-inversion/1';

/**
 * The lattice BDIA's states live on (schedulers/bdia.ts), recorded because a replay is exact to
 * the bit only on the lattice the inversion used.
 */
export const INVERSION_LATTICE = `2^${Math.log2(QUANTUM)}`;

export interface InversionMeta {
  packId: string;
  unetSha256: string;
  method: 'bdia';
  gamma: number;
  /** The explicit, increasing timestep levels λ_0 … λ_M the pair was computed on. */
  levels: number[];
  guidance: number;
  prompt: string;
  negativePrompt: string;
  /** Size of the source image, in pixels. */
  width: number;
  height: number;
  sourceSha256: string;
  engineVersion: string;
  /** ISO 8601. */
  createdAt: string;
  strength?: number;
  steps?: number;
  /**
   * Where the network ran: the execution provider ('cpu', 'cuda', …), onnxruntime's version and
   * the UNet's precision ('fp32', 'fp16', …). A replay is bit-exact where all three match;
   * elsewhere it is allowed and reports the error it got. Absent in files made before they were
   * recorded.
   */
  provider?: string;
  onnxruntime?: string;
  precision?: string;
}

export interface Inversion {
  zTop: Float64Array;
  zNext: Float64Array;
  /** [1, C, h, w]. */
  shape: number[];
  /**
   * The source latent the inversion started from: a replay with the source prompt must give it
   * back, so the replay can say how far it landed (0 on the same provider and precision).
   */
  zSource?: Float64Array;
  /** RGB, row-major, 3 bytes a pixel. */
  preview?: { data: Uint8Array; width: number; height: number };
  meta: InversionMeta;
}

export interface InversionExpectation {
  packId?: string;
  unetSha256?: string;
  levels?: number[];
}

const TEXT_FIELDS = [
  'packId',
  'unetSha256',
  'prompt',
  'negativePrompt',
  'sourceSha256',
  'engineVersion',
  'createdAt',
] as const;
const TENSOR_ORDER = ['z_top', 'z_next', 'z_source', 'preview'] as const;
const OPTIONAL_TEXT_FIELDS = ['provider', 'onnxruntime', 'precision'] as const;
const NUMBER_FIELDS = ['gamma', 'guidance', 'width', 'height'] as const;
const OPTIONAL_NUMBER_FIELDS = ['strength', 'steps'] as const;

function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Hash of every metadata entry but `metaSha256` itself, in a canonical (sorted-key) form. */
function metadataHash(metadata: Record<string, string>): string {
  const entries = Object.entries(metadata)
    .filter(([k]) => k !== 'metaSha256')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return sha256(JSON.stringify(entries));
}

function checkShape(inv: Inversion): void {
  const n = inv.shape.reduce((a, d) => a * d, 1);
  if (
    inv.shape.length !== 4 ||
    inv.shape[0] !== 1 ||
    !inv.shape.every((d) => Number.isInteger(d) && d > 0)
  ) {
    throw new RetraceError(
      'BAD_INPUT',
      `inversion shape must be [1, C, h, w], got [${inv.shape.join(', ')}]`,
    );
  }
  if (inv.zTop.length !== n || inv.zNext.length !== n) {
    throw new RetraceError(
      'BAD_INPUT',
      `inversion tensors have ${inv.zTop.length} and ${inv.zNext.length} values, shape [${inv.shape.join(', ')}] needs ${n}`,
    );
  }
  if (inv.zSource && inv.zSource.length !== n) {
    throw new RetraceError(
      'BAD_INPUT',
      `inversion source latent has ${inv.zSource.length} values, shape [${inv.shape.join(', ')}] needs ${n}`,
    );
  }
  if (inv.preview && inv.preview.data.length !== inv.preview.width * inv.preview.height * 3) {
    throw new RetraceError('BAD_INPUT', 'inversion preview must be RGB: width × height × 3 bytes');
  }
}

function toMetadata(meta: InversionMeta): Record<string, string> {
  const out: Record<string, string> = {
    format: INVERSION_FORMAT,
    method: meta.method,
    lattice: INVERSION_LATTICE,
  };
  for (const k of TEXT_FIELDS) out[k] = meta[k];
  for (const k of NUMBER_FIELDS) out[k] = String(meta[k]);
  for (const k of OPTIONAL_NUMBER_FIELDS) {
    const v = meta[k];
    if (v !== undefined) out[k] = String(v);
  }
  for (const k of OPTIONAL_TEXT_FIELDS) {
    const v = meta[k];
    if (v !== undefined) out[k] = v;
  }
  out.levels = JSON.stringify(meta.levels);
  return out;
}

/** Writes an inversion atomically. */
export async function writeInversion(file: string, inv: Inversion): Promise<void> {
  checkShape(inv);
  if (!inv.meta.levels.every((l) => Number.isFinite(l))) {
    throw new RetraceError('BAD_INPUT', 'inversion levels must be finite numbers');
  }
  const tensors = new Map<string, Tensor>([
    ['z_top', { dtype: 'F64', shape: inv.shape, data: inv.zTop }],
    ['z_next', { dtype: 'F64', shape: inv.shape, data: inv.zNext }],
  ]);
  if (inv.zSource) tensors.set('z_source', { dtype: 'F64', shape: inv.shape, data: inv.zSource });
  if (inv.preview) {
    tensors.set('preview', {
      dtype: 'U8',
      shape: [inv.preview.height, inv.preview.width, 3],
      data: inv.preview.data,
    });
  }
  // The tensor hash needs the data bytes, which serialisation lays out; serialise once without it.
  const draft = serializeSafetensors(tensors, {});
  const hash = createHash('sha256');
  for (const chunk of draft.slice(1)) hash.update(chunk);
  const metadata = toMetadata(inv.meta);
  metadata.tensorSha256 = hash.digest('hex');
  metadata.metaSha256 = metadataHash(metadata);
  await writeFileAtomic(file, serializeSafetensors(tensors, metadata));
}

function damaged(file: string, reason: string): RetraceError {
  return new RetraceError('BAD_FILE', `${file}: damaged inversion file (${reason})`);
}

function field(file: string, metadata: Record<string, string>, key: string): string {
  const v = metadata[key];
  if (v === undefined) {
    throw new RetraceError('BAD_FILE', `${file}: inversion metadata has no "${key}" field`);
  }
  return v;
}

function numberField(file: string, metadata: Record<string, string>, key: string): number {
  const text = field(file, metadata, key);
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v)) {
    throw new RetraceError(
      'BAD_FILE',
      `${file}: inversion metadata "${key}" is not a number: ${JSON.stringify(text)}`,
    );
  }
  return v;
}

/** The header as our writer (or any compact JSON writer) lays it out, padded with spaces only. */
function checkCanonicalHeader(file: string, bytes: Uint8Array): void {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + length));
  const json = text.replace(/ +$/, '');
  if (JSON.stringify(JSON.parse(json)) !== json) {
    throw damaged(file, 'the header is not in the form it was written in');
  }
}

/**
 * Reads and checks an inversion. `expect` names the pack (id, unet sha256) and grid the caller
 * will replay on; a file made for anything else is refused with the difference.
 */
export async function readInversion(
  file: string,
  options: { expect?: InversionExpectation } = {},
): Promise<Inversion> {
  return parseInversion(await readBytes(file), file, options);
}

/** Checks and decodes inversion bytes; `file` names the source in errors. */
export function parseInversion(
  bytes: Uint8Array,
  file: string,
  options: { expect?: InversionExpectation } = {},
): Inversion {
  const parsed = parseSafetensors(bytes, file);
  const { metadata, tensors } = parsed;
  const format = metadata.format;
  if (format !== INVERSION_FORMAT) {
    throw new RetraceError(
      'BAD_FILE',
      format === undefined
        ? `${file}: not an inversion file (no "format" in its metadata)`
        : `${file}: not a ${INVERSION_FORMAT} file (format is ${JSON.stringify(format)})`,
    );
  }
  checkCanonicalHeader(file, bytes);
  const recordedTensorHash = field(file, metadata, 'tensorSha256');
  // The tensors in their canonical order (z_top, z_next, preview): byte for byte the data region
  // our writer lays out, and still valid when another safetensors writer re-saved the file in its
  // own order. Every data byte belongs to some tensor (the parser checks), so all are covered.
  const tensorHash = createHash('sha256');
  for (const name of TENSOR_ORDER) {
    const t = tensors.get(name);
    if (t) tensorHash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  const actualTensorHash = tensorHash.digest('hex');
  if (actualTensorHash !== recordedTensorHash) {
    throw damaged(
      file,
      `tensor bytes hash to ${actualTensorHash}, the file records ${recordedTensorHash}`,
    );
  }
  const recordedMetaHash = field(file, metadata, 'metaSha256');
  if (metadataHash(metadata) !== recordedMetaHash) {
    throw damaged(file, 'the metadata does not match its recorded hash');
  }

  const method = field(file, metadata, 'method');
  if (method !== 'bdia') {
    throw new RetraceError(
      'BAD_FILE',
      `${file}: inversion method ${JSON.stringify(method)} is not "bdia"`,
    );
  }
  const lattice = metadata.lattice;
  if (lattice !== INVERSION_LATTICE) {
    throw new RetraceError(
      'BAD_FILE',
      lattice === undefined
        ? `${file}: inversion metadata has no "lattice" field: it was made by an earlier Retrace whose replays were exact only to ~1e-15, not to the bit; invert the photo again`
        : `${file}: inversion states are on lattice ${lattice}, this Retrace replays exactly on ${INVERSION_LATTICE}`,
    );
  }
  let levels: unknown;
  try {
    levels = JSON.parse(field(file, metadata, 'levels'));
  } catch {
    levels = undefined;
  }
  if (!Array.isArray(levels) || levels.length < 2 || !levels.every((l) => typeof l === 'number')) {
    throw new RetraceError(
      'BAD_FILE',
      `${file}: inversion metadata "levels" is not a list of numbers`,
    );
  }
  const meta: InversionMeta = {
    packId: field(file, metadata, 'packId'),
    unetSha256: field(file, metadata, 'unetSha256'),
    method: 'bdia',
    gamma: numberField(file, metadata, 'gamma'),
    levels: levels as number[],
    guidance: numberField(file, metadata, 'guidance'),
    prompt: field(file, metadata, 'prompt'),
    negativePrompt: field(file, metadata, 'negativePrompt'),
    width: numberField(file, metadata, 'width'),
    height: numberField(file, metadata, 'height'),
    sourceSha256: field(file, metadata, 'sourceSha256'),
    engineVersion: field(file, metadata, 'engineVersion'),
    createdAt: field(file, metadata, 'createdAt'),
  };
  for (const k of OPTIONAL_NUMBER_FIELDS) {
    if (metadata[k] !== undefined) meta[k] = numberField(file, metadata, k);
  }
  for (const k of OPTIONAL_TEXT_FIELDS) {
    const v = metadata[k];
    if (v !== undefined) meta[k] = v;
  }

  const known: readonly string[] = TENSOR_ORDER;
  const unexpected = [...tensors.keys()].filter((k) => !known.includes(k));
  if (unexpected.length > 0) {
    throw new RetraceError(
      'BAD_FILE',
      `${file}: inversion has unexpected tensors (${unexpected.join(', ')}); it holds z_top, z_next, an optional z_source and an optional preview`,
    );
  }
  const zTop = tensors.get('z_top');
  const zNext = tensors.get('z_next');
  for (const [name, t] of [
    ['z_top', zTop],
    ['z_next', zNext],
  ] as const) {
    if (!t) throw new RetraceError('BAD_FILE', `${file}: inversion has no ${name} tensor`);
    if (t.dtype !== 'F64')
      throw new RetraceError('BAD_FILE', `${file}: ${name} is ${t.dtype}, expected F64`);
  }
  const shape = (zTop as Tensor).shape;
  if (shape.length !== 4 || shape[0] !== 1 || shape.join() !== (zNext as Tensor).shape.join()) {
    throw new RetraceError(
      'BAD_FILE',
      `${file}: z_top [${shape.join(', ')}] and z_next [${(zNext as Tensor).shape.join(', ')}] must share a [1, C, h, w] shape`,
    );
  }
  const inv: Inversion = {
    zTop: (zTop as Tensor).data as Float64Array,
    zNext: (zNext as Tensor).data as Float64Array,
    shape,
    meta,
  };
  const zSource = tensors.get('z_source');
  if (zSource) {
    if (zSource.dtype !== 'F64' || zSource.shape.join() !== shape.join()) {
      throw new RetraceError(
        'BAD_FILE',
        `${file}: z_source must be F64 [${shape.join(', ')}] like z_top (it is ${zSource.dtype} [${zSource.shape.join(', ')}])`,
      );
    }
    inv.zSource = zSource.data as Float64Array;
  }
  const preview = tensors.get('preview');
  if (preview) {
    const [h, w, c] = preview.shape;
    if (
      preview.dtype !== 'U8' ||
      preview.shape.length !== 3 ||
      c !== 3 ||
      h === undefined ||
      w === undefined
    ) {
      throw new RetraceError('BAD_FILE', `${file}: preview must be U8 [height, width, 3]`);
    }
    inv.preview = { data: preview.data as Uint8Array, width: w, height: h };
  }

  checkInversionFor(inv, options.expect ?? {}, file);
  return inv;
}

/** Refuses an inversion made for another pack, network version or grid than `expect` names. */
export function checkInversionFor(
  inv: Inversion,
  expect: InversionExpectation,
  file: string,
): void {
  const { meta } = inv;
  if (expect.packId !== undefined && expect.packId !== meta.packId) {
    throw new RetraceError(
      'MISMATCH',
      `${file}: made with pack '${meta.packId}', not '${expect.packId}'`,
    );
  }
  if (expect.unetSha256 !== undefined && expect.unetSha256 !== meta.unetSha256) {
    throw new RetraceError(
      'MISMATCH',
      `${file}: made with another version of pack '${meta.packId}' (unet sha256 ${meta.unetSha256}, this pack has ${expect.unetSha256})`,
    );
  }
  if (expect.levels !== undefined && expect.levels.join() !== meta.levels.join()) {
    throw new RetraceError(
      'MISMATCH',
      `${file}: made on another timestep grid (${describeLevels(meta.levels)}; expected ${describeLevels(expect.levels)})`,
    );
  }
}

function describeLevels(levels: readonly number[]): string {
  const shown =
    levels.length <= 8
      ? levels.join(', ')
      : `${levels.slice(0, 3).join(', ')}, …, ${levels.slice(-2).join(', ')}`;
  return `${levels.length} levels [${shown}]`;
}
