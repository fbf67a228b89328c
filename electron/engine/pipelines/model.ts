// One loaded model: the ONNX sessions of a pack (one wrapper per network, as OnnxStack does),
// with the conversions at the network boundary — float64 engine states in, float64 out,
// float32 only inside the call — and classifier-free guidance as one batched call.
import { RetraceError } from '../errors.js';
import type { PackManifest } from '../packs/schema.js';
import { NetworkSession, ORT_VERSION, type RuntimeOptions } from '../runtime/session.js';

export interface TextTokenizer {
  readonly maxLength: number;
  encode(prompt: string): Int32Array;
}

/** What a pipeline needs to know about a pack: its manifest, resolved files and tokenizer. */
export interface ModelSource {
  id: string;
  manifest: PackManifest;
  unetSha256: string;
  files: { unet: string; textEncoder?: string; vaeEncoder?: string; vaeDecoder?: string };
  loadTokenizer?: () => Promise<TextTokenizer>;
  /** Offset added to every grid timestep (Stable Diffusion's steps_offset). */
  stepsOffset?: number;
}

/** Text conditioning for one prompt pair, ready to be batched. */
export interface Conditioning {
  uncond: Float32Array;
  cond: Float32Array;
  /** [L, D] of one row. */
  rowShape: [number, number];
}

type NetworkName = keyof ModelSource['files'];
const NETWORK_NAMES: readonly NetworkName[] = ['unet', 'textEncoder', 'vaeEncoder', 'vaeDecoder'];

function requireFile(source: ModelSource, key: NetworkName): string {
  const file = source.files[key];
  if (!file) throw new RetraceError('BAD_PACK', `pack ${source.id} has no ${key} network`);
  return file;
}

export interface RuntimeRecord {
  provider: string;
  onnxruntime: string;
  precision: string;
}

export class DiffusionModel {
  /** The networks opened so far, each on first use. */
  private readonly networks: Partial<Record<NetworkName, NetworkSession>> = {};
  private tokenizer: TextTokenizer | undefined;
  private readonly promptCache = new Map<string, Float32Array>();

  constructor(
    readonly source: ModelSource,
    private readonly runtime: RuntimeOptions = {},
  ) {}

  get manifest(): PackManifest {
    return this.source.manifest;
  }

  /** Sessions opened so far (for reports: provider used, time inside run). */
  sessions(): NetworkSession[] {
    return Object.values(this.networks);
  }

  /** Seconds spent inside onnxruntime's run across all of this model's networks. */
  networkSeconds(): number {
    return this.sessions().reduce((sum, s) => sum + s.runSeconds, 0);
  }

  networkCalls(): number {
    return this.sessions().reduce((sum, s) => sum + s.runs, 0);
  }

  /** One of the pack's networks, opened on first use and kept. */
  private async network(name: NetworkName): Promise<NetworkSession> {
    const open =
      this.networks[name] ??
      (await NetworkSession.open(requireFile(this.source, name), this.runtime));
    this.networks[name] = open;
    return open;
  }

  unet(): Promise<NetworkSession> {
    return this.network('unet');
  }

  /** Where this model's UNet runs: provider, onnxruntime version, precision (opens the UNet). */
  async runtimeRecord(): Promise<RuntimeRecord> {
    const unet = await this.unet();
    return { provider: unet.provider.used, onnxruntime: ORT_VERSION, precision: unet.precision };
  }

  /** Opens every network now (so the first step is not slowed by session creation). */
  async warm(): Promise<void> {
    for (const name of NETWORK_NAMES) if (this.source.files[name]) await this.network(name);
  }

  /** The text encoder's hidden states for one prompt, [L, D] flattened; cached per prompt. */
  async encodePrompt(prompt: string): Promise<{ states: Float32Array; shape: [number, number] }> {
    if (!this.source.loadTokenizer)
      throw new RetraceError('BAD_PACK', `pack ${this.source.id} has no tokenizer`);
    this.tokenizer ??= await this.source.loadTokenizer();
    const cached = this.promptCache.get(prompt);
    const L = this.tokenizer.maxLength;
    if (cached) return { states: cached, shape: [L, cached.length / L] };
    const ids = this.tokenizer.encode(prompt);
    const session = await this.network('textEncoder');
    const out = await session.run(
      { input_ids: { data: ids, dims: [1, ids.length] } },
      'last_hidden_state',
    );
    const D = out.dims[2];
    if (out.dims.length !== 3 || D === undefined || out.dims[1] !== L) {
      throw new RetraceError(
        'BAD_PACK',
        `${session.file}: last_hidden_state has shape [${out.dims}], expected [1, ${L}, D]`,
      );
    }
    this.promptCache.set(prompt, out.data);
    return { states: out.data, shape: [L, D] };
  }

  async conditioning(prompt: string, negativePrompt: string): Promise<Conditioning> {
    const c = await this.encodePrompt(prompt);
    const u = await this.encodePrompt(negativePrompt);
    return { cond: c.states, uncond: u.states, rowShape: c.shape };
  }

  /**
   * The network's raw output for a batch: `z` is B rows of `rowShape` (batch-major, float64),
   * one timestep per row, and optional text states (B rows of [L, D]). The output has
   * `outLength` values (default: as many as `z`; half for a restoration network, whose input
   * is the state and the degraded image side by side).
   */
  async predict(
    z: Float64Array,
    rowShape: readonly number[],
    timesteps: readonly number[],
    text?: Float32Array,
    outLength = z.length,
  ): Promise<Float64Array> {
    const session = await this.unet();
    const B = timesteps.length;
    const feeds: Parameters<NetworkSession['run']>[0] = {
      sample: { data: Float32Array.from(z), dims: [B, ...rowShape] },
      timestep: { data: timesteps, dims: [B] },
    };
    if (text) {
      const perRow = text.length / B;
      const L = this.tokenizer?.maxLength ?? 0;
      feeds.encoder_hidden_states = { data: text, dims: [B, L, perRow / L] };
    }
    const out = await session.run64(
      feeds,
      session.outputs.some((o) => o.name === 'out_sample') ? 'out_sample' : undefined,
    );
    if (out.data.length !== outLength) {
      throw new RetraceError(
        'BAD_PACK',
        `${session.file}: output has ${out.data.length} values, expected ${outLength}`,
      );
    }
    return out.data;
  }

  /**
   * Guided noise for B rows: ε_u + g·(ε_c − ε_u), both branches in ONE call of batch 2B.
   * With g = 1 or no negative branch needed, a single conditional call of batch B.
   */
  async guidedNoise(
    z: Float64Array,
    rowShape: readonly number[],
    timesteps: readonly number[],
    conditioning: Conditioning | undefined,
    guidance: number,
  ): Promise<Float64Array> {
    const B = timesteps.length;
    if (!conditioning) return this.predict(z, rowShape, timesteps);
    const rowText = conditioning.cond.length;
    if (guidance === 1) {
      const text = new Float32Array(rowText * B);
      for (let b = 0; b < B; b++) text.set(conditioning.cond, b * rowText);
      return this.predict(z, rowShape, timesteps, text);
    }
    const n = z.length / B;
    const zz = new Float64Array(2 * z.length);
    zz.set(z, 0);
    zz.set(z, z.length);
    const text = new Float32Array(2 * B * rowText);
    for (let b = 0; b < B; b++) {
      text.set(conditioning.uncond, b * rowText);
      text.set(conditioning.cond, (B + b) * rowText);
    }
    const both = await this.predict(zz, rowShape, [...timesteps, ...timesteps], text);
    const eps = new Float64Array(z.length);
    for (let i = 0; i < B * n; i++) {
      const u = both[i] as number;
      const c = both[B * n + i] as number;
      eps[i] = u + guidance * (c - u);
    }
    return eps;
  }

  /** VAE encoder: image [1,3,H,W] in [-1,1] → scaled latent (posterior mean × scale), float64. */
  async encodeImage(
    chw: Float32Array,
    height: number,
    width: number,
  ): Promise<{ latent: Float64Array; shape: number[] }> {
    const session = await this.network('vaeEncoder');
    const out = await session.run({ sample: { data: chw, dims: [1, 3, height, width] } });
    const latentSpec = this.manifest.latent;
    if (!latentSpec)
      throw new RetraceError('BAD_PACK', `pack ${this.source.id} has no latent settings`);
    const C = latentSpec.channels;
    const [, outC, h, w] = out.dims;
    if (outC === undefined || h === undefined || w === undefined) {
      throw new RetraceError('BAD_PACK', `${session.file}: unexpected output shape [${out.dims}]`);
    }
    // Some exporters return the posterior's parameters (mean ‖ log-variance): keep the mean.
    if (outC !== C && outC !== 2 * C) {
      throw new RetraceError(
        'BAD_PACK',
        `${session.file}: output has ${outC} channels, expected ${C}`,
      );
    }
    const latent = new Float64Array(C * h * w);
    for (let i = 0; i < latent.length; i++) latent[i] = (out.data[i] as number) * latentSpec.scale;
    return { latent, shape: [C, h, w] };
  }

  /** VAE decoder: scaled latent → image [3,H,W] in [-1,1] (float32, as the network gives it). */
  async decodeLatent(
    latent: Float64Array,
    shape: readonly number[],
  ): Promise<{ chw: Float32Array; height: number; width: number }> {
    const session = await this.network('vaeDecoder');
    const scale = this.manifest.latent?.scale ?? 1;
    const z = new Float32Array(latent.length);
    for (let i = 0; i < z.length; i++) z[i] = (latent[i] as number) / scale;
    const out = await session.run({ latent_sample: { data: z, dims: [1, ...shape] } });
    const [, c, height, width] = out.dims;
    if (c !== 3 || height === undefined || width === undefined) {
      throw new RetraceError(
        'BAD_PACK',
        `${session.file}: decoder output has shape [${out.dims}], expected [1,3,H,W]`,
      );
    }
    return { chw: out.data, height, width };
  }

  async dispose(): Promise<void> {
    await Promise.all(this.sessions().map((s) => s.dispose()));
    for (const name of NETWORK_NAMES) delete this.networks[name];
  }
}
