// What each network of a pack takes and gives, read from the ONNX graphs without loading them:
// the precision `models info` shows, and the check that refuses at import a folder whose
// networks Retrace could not run (an input type it cannot feed, no float output), instead of
// failing at the first job.
import path from 'node:path';
import { RetraceError } from '../errors.js';
import { readOnnxSignature, type OnnxInput } from '../formats/onnx.js';
import type { ModelSource } from '../pipelines/model.js';
import { precisionOf, type Precision } from '../runtime/session.js';

export interface NetworkDescription {
  /** unet, textEncoder, vaeEncoder or vaeDecoder. */
  network: string;
  file: string;
  precision: Precision;
  inputs: OnnxInput[];
  outputs: OnnxInput[];
}

/** Input types the runtime converts feeds to (runtime/session.ts). */
const FEEDABLE = new Set(['float32', 'float16', 'float64', 'int32', 'int64']);
const FLOAT_OUT = new Set(['float32', 'float16', 'float64']);

export async function describeNetworks(
  pack: Pick<ModelSource, 'files'>,
): Promise<NetworkDescription[]> {
  const out: NetworkDescription[] = [];
  for (const [network, file] of Object.entries(pack.files)) {
    if (typeof file !== 'string') continue;
    const { inputs, outputs } = await readOnnxSignature(file);
    out.push({ network, file, precision: precisionOf([...inputs, ...outputs]), inputs, outputs });
  }
  return out;
}

/** Throws BAD_PACK naming the file and the value when a network is one Retrace cannot run. */
export function checkNetworks(networks: readonly NetworkDescription[]): void {
  for (const n of networks) {
    const bad = n.inputs.find((i) => !FEEDABLE.has(i.type));
    if (bad) {
      throw new RetraceError(
        'BAD_PACK',
        `${n.file}: input "${bad.name}" is ${bad.type}, which Retrace cannot feed (it feeds float32, float16, float64, int32 and int64)`,
      );
    }
    if (!n.outputs.some((o) => FLOAT_OUT.has(o.type))) {
      const have = n.outputs.map((o) => `${o.name} ${o.type}`).join(', ') || 'none';
      throw new RetraceError(
        'BAD_PACK',
        `${n.file}: no float32, float16 or float64 output to read (outputs: ${have})`,
      );
    }
  }
}

/** One line per network: "unet fp16 (sample float16, timestep int64 → out_sample float16)". */
export function networkSummary(networks: readonly NetworkDescription[], root?: string): string {
  const io = (values: OnnxInput[]) => values.map((v) => `${v.name} ${v.type}`).join(', ');
  return networks
    .map(
      (n) =>
        `${n.network.padEnd(12)} ${n.precision.padEnd(5)} ${root ? path.relative(root, n.file) : n.file}: ${io(n.inputs)} → ${io(n.outputs)}`,
    )
    .join('\n');
}
