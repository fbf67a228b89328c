// safetensors, read and written by hand: the format is small (an 8-byte little-endian header
// length, a JSON header, then the raw little-endian tensor bytes) and files we write must open in
// any safetensors reader. The reader validates like the reference implementation: the header is a
// JSON object, every tensor's byte range fits its dtype × shape, and the ranges tile the data
// region exactly (from 0, contiguous, no overlap, nothing missing or left over).
import { readFile } from 'node:fs/promises';
import { RetraceError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'U64'
  | 'I32'
  | 'U32'
  | 'I16'
  | 'U16'
  | 'I8'
  | 'U8'
  | 'BOOL'
  | 'F8_E4M3'
  | 'F8_E5M2';

/** The typed array each dtype is held in; 16- and 8-bit floats stay as their raw bits. */
export interface TensorDataByDtype {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  U64: BigUint64Array;
  I32: Int32Array;
  U32: Uint32Array;
  I16: Int16Array;
  U16: Uint16Array;
  I8: Int8Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
  F8_E4M3: Uint8Array;
  F8_E5M2: Uint8Array;
}

export type TensorData = TensorDataByDtype[SafetensorsDtype];

export interface Tensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
  /** The raw tensor-data region (everything after the header), as stored. */
  dataRegion: Uint8Array;
}

type TypedArrayCtor = {
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
};

const CTORS: Record<SafetensorsDtype, TypedArrayCtor> = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  U64: BigUint64Array,
  I32: Int32Array,
  U32: Uint32Array,
  I16: Int16Array,
  U16: Uint16Array,
  I8: Int8Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
  F8_E4M3: Uint8Array,
  F8_E5M2: Uint8Array,
};

/** The reference implementation's cap on the header size. */
const MAX_HEADER_BYTES = 100_000_000;

function bad(file: string, reason: string): RetraceError {
  return new RetraceError('BAD_FILE', `${file}: not a valid safetensors file (${reason})`);
}

function isDtype(v: unknown): v is SafetensorsDtype {
  return typeof v === 'string' && Object.hasOwn(CTORS, v);
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** Parses safetensors bytes; `file` names the source in errors. Tensor data is copied out. */
export function parseSafetensors(bytes: Uint8Array, file = 'safetensors data'): SafetensorsFile {
  if (bytes.length < 8) throw bad(file, `${bytes.length} bytes is too short for the header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw bad(file, `header length ${headerLength} exceeds ${MAX_HEADER_BYTES}`);
  }
  const n = Number(headerLength);
  if (8 + n > bytes.length) {
    throw bad(file, `truncated: header of ${n} bytes but the file has ${bytes.length}`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch {
    throw bad(file, 'the header is not UTF-8 JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw bad(file, 'the header is not a JSON object');
  }
  const dataRegion = bytes.subarray(8 + n);
  const metadata: Record<string, string> = {};
  const entries: {
    name: string;
    dtype: SafetensorsDtype;
    shape: number[];
    begin: number;
    end: number;
  }[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw bad(file, '__metadata__ is not an object');
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') throw bad(file, `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (typeof value !== 'object' || value === null)
      throw bad(file, `tensor ${name}: not an object`);
    const info = value as Record<string, unknown>;
    const { dtype, shape, data_offsets: offsets } = info;
    if (!isDtype(dtype)) throw bad(file, `tensor ${name}: unknown dtype ${JSON.stringify(dtype)}`);
    if (
      !Array.isArray(shape) ||
      !shape.every((d): d is number => Number.isSafeInteger(d) && (d as number) >= 0)
    ) {
      throw bad(file, `tensor ${name}: shape must be a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o): o is number => Number.isSafeInteger(o) && (o as number) >= 0)
    ) {
      throw bad(file, `tensor ${name}: data_offsets must be [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw bad(file, `tensor ${name}: data_offsets end before they begin`);
    const expected = elementCount(shape) * CTORS[dtype].BYTES_PER_ELEMENT;
    if (end - begin !== expected) {
      throw bad(
        file,
        `tensor ${name}: ${dtype} [${shape.join(', ')}] needs ${expected} bytes, data_offsets give ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: [...shape], begin, end });
  }
  // The byte ranges must tile the data region exactly, as the reference reader demands.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of sorted) {
    if (e.begin !== cursor) {
      throw bad(
        file,
        e.begin < cursor
          ? `tensor ${e.name} overlaps the tensor before it`
          : `gap before tensor ${e.name} (bytes ${cursor}–${e.begin} belong to no tensor)`,
      );
    }
    cursor = e.end;
  }
  if (cursor > dataRegion.length) {
    throw bad(
      file,
      `truncated: the header describes ${cursor} data bytes, the file has ${dataRegion.length}`,
    );
  }
  if (cursor < dataRegion.length) {
    throw bad(
      file,
      `${dataRegion.length - cursor} bytes after the last tensor belong to no tensor`,
    );
  }
  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    const copy = new ArrayBuffer(e.end - e.begin);
    new Uint8Array(copy).set(dataRegion.subarray(e.begin, e.end));
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: new CTORS[e.dtype](copy) });
  }
  return { tensors, metadata, dataRegion };
}

/** A file's bytes, or a BAD_FILE error naming it. */
export async function readBytes(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new RetraceError(
      'BAD_FILE',
      `${file}: cannot read (${code === 'ENOENT' ? 'no such file' : String(err)})`,
      { cause: err },
    );
  }
}

export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  const bytes = await readBytes(file);
  return parseSafetensors(bytes, file);
}

function checkTensor(name: string, t: Tensor): void {
  if (!isDtype(t.dtype))
    throw new RetraceError('BAD_INPUT', `tensor ${name}: unknown dtype ${t.dtype}`);
  const ctor = CTORS[t.dtype];
  if (!(t.data instanceof ctor)) {
    throw new RetraceError(
      'BAD_INPUT',
      `tensor ${name}: ${t.dtype} data must be a ${ctor.name}, got ${t.data.constructor.name}`,
    );
  }
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RetraceError('BAD_INPUT', `tensor ${name}: shape must be non-negative integers`);
  }
  if (elementCount(t.shape) !== t.data.length) {
    throw new RetraceError(
      'BAD_INPUT',
      `tensor ${name}: shape [${t.shape.join(', ')}] has ${elementCount(t.shape)} elements, data has ${t.data.length}`,
    );
  }
}

/**
 * Serialises tensors (in the given order) and string metadata. The header is padded with spaces
 * to a multiple of 8 bytes so that every tensor starts 8-byte aligned, as the Python library does.
 */
export function serializeSafetensors(
  tensors: ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array[] {
  const list = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string')
        throw new RetraceError('BAD_INPUT', `metadata ${k} must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const chunks: Uint8Array[] = [];
  for (const [name, t] of list) {
    if (name === '__metadata__')
      throw new RetraceError('BAD_INPUT', 'a tensor cannot be named __metadata__');
    checkTensor(name, t);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [offset, offset + bytes.length],
    };
    offset += bytes.length;
    chunks.push(bytes);
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return [head, ...chunks];
}

/** Writes a safetensors file atomically. */
export async function writeSafetensors(
  file: string,
  tensors: ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  await writeFileAtomic(file, serializeSafetensors(tensors, metadata));
}
