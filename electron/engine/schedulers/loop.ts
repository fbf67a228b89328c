// The contract every sampling loop shares with the pipelines that call it: how the network is
// asked for a noise estimate, how cancellation and progress work, and how network calls are
// counted. No maths lives here.
import { CancelledError, RetraceError } from '../errors.js';
import { alphaBarAt, type NoiseSchedule } from './schedule.js';

/**
 * The network as the loops see it. `z` holds B rows back to back (batch-major, B·n values,
 * float64; casting to float32 is the caller's business), `timesteps` one timestep per row, and
 * `stepIndex` counts network calls from 0. Returns B·n values (ε, v or resnoise, by model).
 * The loops reuse their state buffers: `z` may change once the returned promise has resolved, so
 * an estimator reads (or copies) it before then and keeps no reference to it.
 */
export type NoiseEstimator = (
  z: Float64Array,
  timesteps: number[],
  stepIndex: number,
) => Promise<Float64Array> | Float64Array;

export interface LoopOptions {
  /** Checked before every network call; an aborted signal throws CancelledError. */
  signal?: AbortSignal;
  /** Called after every network call with the calls done and the calls the loop will make. */
  onStep?: (done: number, total: number) => void;
}

export interface LoopResult {
  sample: Float64Array;
  /** Network evaluations made (one per step: guidance is batched inside one call). */
  nfe: number;
}

/** What the network predicts; v-prediction is converted to ε at the level it was evaluated at. */
export type Prediction = 'epsilon' | 'v_prediction';

/** Calls the network for one loop: checks cancellation, output length, counts and reports. */
export class NetworkCalls {
  private done = 0;

  constructor(
    private readonly eps: NoiseEstimator,
    private readonly total: number,
    private readonly options: LoopOptions,
  ) {}

  get count(): number {
    return this.done;
  }

  async call(z: Float64Array, timesteps: number[], outLength = z.length): Promise<Float64Array> {
    if (this.options.signal?.aborted) throw new CancelledError();
    const out = await this.eps(z, timesteps, this.done);
    if (out.length !== outLength) {
      throw new RetraceError(
        'RUNTIME',
        `network returned ${out.length} values for a batch of ${outLength}`,
      );
    }
    this.done++;
    this.options.onStep?.(this.done, this.total);
    return out;
  }
}

/** Number of values per row, after checking that `batch` rows fit `z` exactly. */
export function rowLength(z: Float64Array, batch: number): number {
  if (!Number.isInteger(batch) || batch < 1 || z.length === 0 || z.length % batch !== 0) {
    throw new RetraceError(
      'BAD_INPUT',
      `batch ${batch} does not divide a state of ${z.length} values`,
    );
  }
  return z.length / batch;
}

/** Checks a level list: at least two strictly increasing integers inside the schedule. */
export function checkLevels(schedule: NoiseSchedule, levels: readonly number[]): void {
  if (levels.length < 2) throw new RetraceError('BAD_INPUT', 'levels: need at least two levels');
  for (let k = 0; k < levels.length; k++) {
    const level = levels[k] as number;
    alphaBarAt(schedule, level);
    if (k > 0 && !(level > (levels[k - 1] as number))) {
      throw new RetraceError(
        'BAD_INPUT',
        `levels must increase strictly; got [${levels.join(', ')}]`,
      );
    }
  }
}

/** One timestep per batch row. */
export function sameTimestep(level: number, batch: number): number[] {
  return new Array<number>(batch).fill(level);
}
