// The graph inputs of an ONNX file (names and element types), read straight from its protobuf
// without loading the network: a pack import needs the unet's timestep dtype, and opening a
// Stable Diffusion unet in onnxruntime to learn it would cost seconds and gigabytes. Weights
// (initializers) are skipped by their length prefixes, so a large file costs a few small reads.
import { open, type FileHandle } from 'node:fs/promises';
import { RetraceError } from '../errors.js';

/** ONNX TensorProto.DataType codes and the names onnxruntime uses for them. */
const ELEMENT_TYPES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  16: 'bfloat16',
};

export interface OnnxInput {
  name: string;
  /** 'float32', 'int64', …; 'other' for non-tensor or unknown types. */
  type: string;
}

const CHUNK = 1 << 16;

/** Buffered positioned reads: fields are read in order, skipped payloads cost nothing. */
class Reader {
  private buf = Buffer.alloc(0);
  private bufStart = 0;

  constructor(
    private readonly handle: FileHandle,
    readonly size: number,
  ) {}

  private async ensure(pos: number, n: number): Promise<void> {
    if (pos >= this.bufStart && pos + n <= this.bufStart + this.buf.length) return;
    const length = Math.min(Math.max(n, CHUNK), this.size - pos);
    const buf = Buffer.alloc(Math.max(0, length));
    const { bytesRead } = await this.handle.read(buf, 0, buf.length, pos);
    this.buf = buf.subarray(0, bytesRead);
    this.bufStart = pos;
  }

  async bytes(pos: number, n: number): Promise<Buffer> {
    await this.ensure(pos, n);
    const at = pos - this.bufStart;
    if (at + n > this.buf.length) throw new Error('truncated');
    return this.buf.subarray(at, at + n);
  }

  /** A varint at `pos`: its value (exact up to 2^53) and the position after it. */
  async varint(pos: number): Promise<[number, number]> {
    const bytes = await this.bytes(pos, Math.min(10, this.size - pos));
    return decodeVarint(bytes, 0, pos);
  }
}

function decodeVarint(bytes: Uint8Array, at: number, base = 0): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = at; i < bytes.length && i < at + 10; i++) {
    const b = bytes[i] as number;
    value += (b & 0x7f) * scale;
    scale *= 128;
    if ((b & 0x80) === 0) return [value, base + i + 1];
  }
  throw new Error('bad varint');
}

/** Iterates the fields of a message held in memory. */
function* fields(
  msg: Uint8Array,
): Generator<{ field: number; wire: number; value: number; payload?: Uint8Array }> {
  let at = 0;
  while (at < msg.length) {
    const [tag, afterTag] = decodeVarint(msg, at);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      const [value, next] = decodeVarint(msg, afterTag);
      yield { field, wire, value };
      at = next;
    } else if (wire === 2) {
      const [length, start] = decodeVarint(msg, afterTag);
      if (start + length > msg.length) throw new Error('truncated');
      yield { field, wire, value: length, payload: msg.subarray(start, start + length) };
      at = start + length;
    } else if (wire === 1 || wire === 5) {
      at = afterTag + (wire === 1 ? 8 : 4);
      yield { field, wire, value: 0 };
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
  }
}

/** ValueInfoProto → name and element type (TypeProto.tensor_type.elem_type). */
function parseValueInfo(msg: Uint8Array): OnnxInput {
  let name = '';
  let type = 'other';
  for (const f of fields(msg)) {
    if (f.field === 1 && f.payload) name = new TextDecoder().decode(f.payload);
    if (f.field === 2 && f.payload) {
      for (const t of fields(f.payload)) {
        if (t.field !== 1 || !t.payload) continue; // tensor_type
        for (const e of fields(t.payload)) {
          if (e.field === 1 && e.wire === 0) type = ELEMENT_TYPES[e.value] ?? 'other';
        }
      }
    }
  }
  return { name, type };
}

/**
 * Walks `[start, end)` of the file as a message, handing the payloads of wanted length-delimited
 * fields to `visit` and skipping everything else by its length.
 */
async function walk(
  reader: Reader,
  start: number,
  end: number,
  wanted: (field: number) => boolean,
  visit: (field: number, offset: number, length: number) => Promise<void>,
): Promise<void> {
  let pos = start;
  while (pos < end) {
    const [tag, afterTag] = await reader.varint(pos);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      pos = (await reader.varint(afterTag))[1];
    } else if (wire === 1) {
      pos = afterTag + 8;
    } else if (wire === 5) {
      pos = afterTag + 4;
    } else if (wire === 2) {
      const [length, payload] = await reader.varint(afterTag);
      if (payload + length > end) throw new Error('truncated');
      if (wanted(field)) await visit(field, payload, length);
      pos = payload + length;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
  }
}

const MODEL_GRAPH = 7;
const GRAPH_INPUT = 11;
const GRAPH_OUTPUT = 12;
const GRAPH_INITIALIZER = 5;
const INITIALIZER_NAME = 8;

/**
 * The inputs a caller must feed: the graph inputs minus those an initializer backs (older
 * exporters list weights as inputs too).
 */
export async function readOnnxInputs(file: string): Promise<OnnxInput[]> {
  return (await readOnnxSignature(file)).inputs;
}

export interface OnnxSignature {
  /** What a caller feeds (initializer-backed inputs left out). */
  inputs: OnnxInput[];
  outputs: OnnxInput[];
}

/** The graph's inputs and outputs, names and element types, without loading its weights. */
export async function readOnnxSignature(file: string): Promise<OnnxSignature> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new RetraceError(
      'BAD_PACK',
      `${file}: cannot read (${code === 'ENOENT' ? 'no such file' : String(err)})`,
      { cause: err },
    );
  }
  try {
    const reader = new Reader(handle, (await handle.stat()).size);
    const inputs: OnnxInput[] = [];
    const outputs: OnnxInput[] = [];
    const initializers = new Set<string>();
    let sawGraph = false;
    await walk(
      reader,
      0,
      reader.size,
      (f) => f === MODEL_GRAPH,
      async (_f, graphStart, graphLength) => {
        sawGraph = true;
        await walk(
          reader,
          graphStart,
          graphStart + graphLength,
          (f) => f === GRAPH_INPUT || f === GRAPH_OUTPUT || f === GRAPH_INITIALIZER,
          async (f, offset, length) => {
            if (f === GRAPH_INPUT || f === GRAPH_OUTPUT) {
              (f === GRAPH_INPUT ? inputs : outputs).push(
                parseValueInfo(await reader.bytes(offset, length)),
              );
              return;
            }
            // Only the initializer's name is needed; its weights are skipped.
            await walk(
              reader,
              offset,
              offset + length,
              (g) => g === INITIALIZER_NAME,
              async (_g, nameAt, nameLength) => {
                initializers.add((await reader.bytes(nameAt, nameLength)).toString('utf8'));
              },
            );
          },
        );
      },
    );
    if (!sawGraph) throw new Error('no graph');
    return { inputs: inputs.filter((i) => !initializers.has(i.name)), outputs };
  } catch (err) {
    if (err instanceof RetraceError) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    throw new RetraceError('BAD_PACK', `${file}: not a readable ONNX model (${reason})`, {
      cause: err,
    });
  } finally {
    await handle.close();
  }
}
