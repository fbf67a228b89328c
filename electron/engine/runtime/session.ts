// The only place that talks to onnxruntime-node. One NetworkSession wraps one ONNX file:
// it picks an execution provider (the platform's accelerators tried one at a time, CPU as the
// fallback, every failure kept as a reason the user can read), adapts feeds to the dtypes the
// graph declares, and counts the time spent inside `run` so benchmarks can separate engine
// overhead from network time.
import ort from 'onnxruntime-node';
import { RetraceError } from '../errors.js';
import { decodeHalf, encodeHalf } from './half.js';
import { vulkanEnvironment, webgpuVerdict } from './vulkan.js';

/** The onnxruntime this engine runs on (recorded in inversion files). */
export const ORT_VERSION: string = ort.env.versions.node ?? ort.env.versions.common;

export type ProviderName = 'cuda' | 'dml' | 'coreml' | 'webgpu' | 'cpu';
export type ProviderPreference = 'auto' | ProviderName;

export interface RuntimeOptions {
  /** 'auto' tries the platform's accelerators in order, then CPU. */
  provider?: ProviderPreference;
  /** Intra-op threads for CPU work; 0 or absent lets onnxruntime decide (one per core). */
  threads?: number;
}

export interface ProviderAttempt {
  provider: ProviderName;
  error?: string;
}

export interface ProviderReport {
  used: ProviderName;
  attempts: ProviderAttempt[];
  /** Providers not tried at all, and why (a software-only WebGPU adapter, …). */
  passedOver: PassedOver[];
}

export type ValueType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'uint8' | 'other';

export interface ValueInfo {
  name: string;
  type: ValueType;
  /** Dimensions; symbolic ones are strings (e.g. 'batch'). */
  shape: (number | string)[];
}

/** A feed in engine terms: numbers the session converts to the input's declared type. */
export interface Feed {
  data: Float32Array | Float64Array | Int32Array | BigInt64Array | readonly number[];
  dims: readonly number[];
}

export interface RunResult {
  data: Float32Array;
  dims: number[];
}

// A provider that cannot load (no CUDA add-on, no driver) is an expected fallback, reported to
// the user through ProviderReport; onnxruntime's own console logging of it is noise.
ort.env.logLevel = process.env.RETRACE_ORT_LOG === 'verbose' ? 'verbose' : 'fatal';

const platformOrder: Record<string, ProviderName[]> = {
  linux: ['cuda', 'webgpu'],
  win32: ['dml', 'webgpu'],
  darwin: ['coreml', 'webgpu'],
};

export interface PassedOver {
  provider: ProviderName;
  reason: string;
}

export interface ProviderPlan {
  /** What will be tried, in order; CPU last. */
  candidates: ProviderName[];
  /** Providers of this platform not tried, each with why. */
  passedOver: PassedOver[];
}

/**
 * The providers to try here, best first, CPU last, and why the others are not tried. `auto`
 * means "the fastest provider that works here": a platform accelerator this build of
 * onnxruntime-node lacks is skipped, and so is WebGPU where it could only run on a software
 * rasteriser (runtime/vulkan.ts; the rule is in docs/providers.md). A provider asked for by name
 * is tried unless it cannot start at all (no Vulkan loader or driver for WebGPU).
 */
export function providerPlan(
  preference: ProviderPreference = 'auto',
  probe: { backends?: string[]; webgpu?: () => ReturnType<typeof webgpuVerdict> } = {},
): ProviderPlan {
  const available = new Set(probe.backends ?? ort.listSupportedBackends().map((b) => b.name));
  const webgpu =
    probe.webgpu ??
    (() => (process.platform === 'linux' ? webgpuVerdict(vulkanEnvironment()) : undefined));
  const passedOver: PassedOver[] = [];
  if (preference === 'cpu') return { candidates: ['cpu'], passedOver };
  if (preference !== 'auto') {
    const verdict = preference === 'webgpu' ? webgpu() : undefined;
    if (verdict?.definitive) {
      return {
        candidates: ['cpu'],
        passedOver: [{ provider: preference, reason: verdict.reason }],
      };
    }
    return { candidates: [preference, 'cpu'], passedOver };
  }
  const candidates: ProviderName[] = [];
  for (const provider of platformOrder[process.platform] ?? []) {
    if (!available.has(provider)) {
      passedOver.push({ provider, reason: 'not in this build of onnxruntime-node' });
      continue;
    }
    const verdict = provider === 'webgpu' ? webgpu() : undefined;
    if (verdict) passedOver.push({ provider, reason: verdict.reason });
    else candidates.push(provider);
  }
  return { candidates: [...candidates, 'cpu'], passedOver };
}

/** The providers this build of onnxruntime-node can try here, best first, CPU last. */
export function candidateProviders(preference: ProviderPreference = 'auto'): ProviderName[] {
  return providerPlan(preference).candidates;
}

function toValueType(t: string | undefined): ValueType {
  switch (t) {
    case 'float32':
    case 'float64':
    case 'float16':
    case 'int64':
    case 'int32':
    case 'uint8':
      return t;
    default:
      return 'other';
  }
}

function describeValues(meta: readonly ort.InferenceSession.ValueMetadata[]): ValueInfo[] {
  return meta.map((m) =>
    m.isTensor
      ? { name: m.name, type: toValueType(m.type), shape: [...m.shape] }
      : { name: m.name, type: 'other', shape: [] },
  );
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return (text.split('\n').find((l) => l.trim().length > 0) ?? text).slice(0, 300);
}

function convert(name: string, feed: Feed, type: ValueType): ort.Tensor {
  const dims = [...feed.dims];
  const d = feed.data;
  switch (type) {
    case 'float32':
      return new ort.Tensor(
        'float32',
        d instanceof Float32Array ? d : Float32Array.from(d as ArrayLike<number>),
        dims,
      );
    case 'float64':
      return new ort.Tensor(
        'float64',
        d instanceof Float64Array ? d : Float64Array.from(d as ArrayLike<number>),
        dims,
      );
    case 'int64': {
      if (d instanceof BigInt64Array) return new ort.Tensor('int64', d, dims);
      const src = d as ArrayLike<number>;
      const out = new BigInt64Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = BigInt(Math.round(src[i] as number));
      return new ort.Tensor('int64', out, dims);
    }
    case 'float16':
      // Converted here, at the boundary, and only here: the engine's states stay float64.
      return new ort.Tensor('float16', encodeHalf(d as ArrayLike<number>), dims);
    case 'int32':
      return new ort.Tensor(
        'int32',
        d instanceof Int32Array ? d : Int32Array.from(d as ArrayLike<number>),
        dims,
      );
    default:
      throw new RetraceError(
        'RUNTIME',
        `network input "${name}" has type ${type}, which Retrace cannot feed`,
      );
  }
}

/**
 * A float16 output, widened: onnxruntime-node hands float16 back as raw bit patterns in a
 * Uint16Array, or as a Float16Array where the platform has one (values already numbers).
 */
function halfValues(
  data: unknown,
  type: string,
): (<T extends Float32Array | Float64Array>(as: new (n: number) => T) => T) | undefined {
  if (type !== 'float16') return undefined;
  if (data instanceof Uint16Array) return (as) => decodeHalf(data, new as(data.length));
  const values = data as ArrayLike<number> | undefined;
  if (values && typeof values.length === 'number') {
    return (as) => {
      const out = new as(values.length);
      for (let i = 0; i < values.length; i++) out[i] = values[i] as number;
      return out;
    };
  }
  return undefined;
}

/** The float precision a network computes in, read off its declared inputs and outputs. */
export type Precision = 'fp32' | 'fp16' | 'fp64' | 'mixed' | 'none';

export function precisionOf(values: readonly { type: string }[]): Precision {
  const floats = new Set(
    values.map((v) => v.type).filter((t) => t === 'float32' || t === 'float16' || t === 'float64'),
  );
  if (floats.size === 0) return 'none';
  if (floats.size > 1) return 'mixed';
  const only = [...floats][0];
  return only === 'float16' ? 'fp16' : only === 'float64' ? 'fp64' : 'fp32';
}

/**
 * The session options for one provider. On an accelerator, `session.use_deterministic_compute`
 * asks onnxruntime for its deterministic kernels (CUDA reductions, WebGPU's split-K matmul…):
 * BDIA's replay is exact only if the network gives the same output for the same input in another
 * session. onnxruntime-node passes nothing but the device id to CUDA, so cuDNN's convolution
 * algorithm search stays at onnxruntime's default; a replay therefore checks where it landed
 * (inversion files keep the source latent) and reports any difference (docs/providers.md).
 * The CPU provider is deterministic as it is and keeps the options its results were measured with.
 */
export function sessionOptionsFor(
  provider: ProviderName,
  options: RuntimeOptions = {},
): ort.InferenceSession.SessionOptions {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [provider === 'cuda' ? { name: 'cuda', deviceId: 0 } : provider],
    graphOptimizationLevel: 'all',
    // An accelerator that fails to load is an expected, reported fallback, not a console error.
    logSeverityLevel: provider === 'cpu' ? 3 : 4,
  };
  if (provider !== 'cpu') sessionOptions.extra = { session: { use_deterministic_compute: '1' } };
  if (options.threads && options.threads > 0) {
    sessionOptions.intraOpNumThreads = options.threads;
    sessionOptions.interOpNumThreads = 1;
  }
  return sessionOptions;
}

export class NetworkSession {
  /** Wall seconds spent inside onnxruntime's run, and how many runs. */
  runSeconds = 0;
  runs = 0;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly file: string,
    readonly provider: ProviderReport,
    readonly inputs: ValueInfo[],
    readonly outputs: ValueInfo[],
  ) {}

  /** Opens `file`, trying providers one at a time; a provider that fails is never fatal. */
  static async open(file: string, options: RuntimeOptions = {}): Promise<NetworkSession> {
    const attempts: ProviderAttempt[] = [];
    const plan = providerPlan(options.provider);
    for (const provider of plan.candidates) {
      const sessionOptions = sessionOptionsFor(provider, options);
      try {
        const session = await ort.InferenceSession.create(file, sessionOptions);
        attempts.push({ provider });
        return new NetworkSession(
          session,
          file,
          { used: provider, attempts, passedOver: plan.passedOver },
          describeValues(session.inputMetadata),
          describeValues(session.outputMetadata),
        );
      } catch (err) {
        attempts.push({ provider, error: firstLine(err) });
      }
    }
    const reasons = [
      ...plan.passedOver.map((p) => `${p.provider}: ${p.reason}`),
      ...attempts.map((a) => `${a.provider}: ${a.error ?? 'unknown error'}`),
    ].join('; ');
    throw new RetraceError('RUNTIME', `${file}: cannot open the network (${reasons})`);
  }

  input(name: string): ValueInfo {
    const info = this.inputs.find((i) => i.name === name);
    if (!info) {
      const have = this.inputs.map((i) => i.name).join(', ');
      throw new RetraceError(
        'BAD_PACK',
        `${this.file}: the network has no input "${name}" (it has: ${have})`,
      );
    }
    return info;
  }

  /** fp32, fp16, … as the graph declares its inputs and outputs. */
  get precision(): Precision {
    return precisionOf([...this.inputs, ...this.outputs]);
  }

  hasInput(name: string): boolean {
    return this.inputs.some((i) => i.name === name);
  }

  /** Runs the network; feeds are converted to the declared input types, outputs come back as float32. */
  async run(feeds: Record<string, Feed>, outputName?: string): Promise<RunResult> {
    const { data, dims, wanted, type } = await this.runRaw(feeds, outputName);
    // A copy: the output's buffer belongs to onnxruntime, which may reuse it after this call
    // (a cached text embedding then changed under an inversion, breaking its exactness).
    if (data instanceof Float32Array) return { data: new Float32Array(data), dims };
    if (data instanceof Float64Array) return { data: Float32Array.from(data), dims };
    const half = halfValues(data, type);
    if (half) return { data: half(Float32Array), dims };
    throw this.notFloat(wanted, type);
  }

  /** As `run`, with the output widened to float64 in the one copy out of onnxruntime's buffer. */
  async run64(
    feeds: Record<string, Feed>,
    outputName?: string,
  ): Promise<{ data: Float64Array; dims: number[] }> {
    const { data, dims, wanted, type } = await this.runRaw(feeds, outputName);
    if (data instanceof Float32Array || data instanceof Float64Array) {
      return { data: Float64Array.from(data), dims };
    }
    const half = halfValues(data, type);
    if (half) return { data: half(Float64Array), dims };
    throw this.notFloat(wanted, type);
  }

  private notFloat(wanted: string, type: string): RetraceError {
    return new RetraceError(
      'RUNTIME',
      `${this.file}: output "${wanted}" is ${type}, expected float`,
    );
  }

  private async runRaw(
    feeds: Record<string, Feed>,
    outputName: string | undefined,
  ): Promise<{ data: unknown; dims: number[]; wanted: string; type: string }> {
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, feed] of Object.entries(feeds))
      tensors[name] = convert(name, feed, this.input(name).type);
    const wanted = outputName ?? this.outputs[0]?.name;
    if (!wanted)
      throw new RetraceError('BAD_PACK', `${this.file}: the network declares no outputs`);
    const started = performance.now();
    let result: ort.InferenceSession.ReturnType;
    try {
      result = await this.session.run(tensors, [wanted]);
    } catch (err) {
      throw new RetraceError('RUNTIME', `${this.file}: network call failed: ${firstLine(err)}`, {
        cause: err,
      });
    } finally {
      this.runSeconds += (performance.now() - started) / 1000;
      this.runs += 1;
    }
    const out = result[wanted];
    if (!out)
      throw new RetraceError('RUNTIME', `${this.file}: the network returned no "${wanted}"`);
    return { data: out.data, dims: [...out.dims], wanted, type: out.type };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
