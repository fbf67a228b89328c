// Step-for-step parity with diffusers on a real ONNX network (test/fixtures/networks/tiny-eps.onnx
// through onnxruntime-node): the trajectories that diffusers' DDIMScheduler (η = 0, η = 1,
// v-prediction) and DDIMInverseScheduler produced, recorded by scripts/fixtures/
// make_scheduler_vectors.py, against the engine's samplers fed the same start, text and noise.
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, type Tensor } from '../../electron/engine/formats/safetensors.js';
import { NetworkSession } from '../../electron/engine/runtime/session.js';
import { maxAbsDiff } from '../../electron/engine/runtime/tensors.js';
import { combineGuidance, sampleDdim } from '../../electron/engine/schedulers/ddim.js';
import { invertDdimNaive } from '../../electron/engine/schedulers/ddim-inversion.js';
import type { NoiseEstimator } from '../../electron/engine/schedulers/loop.js';
import { buildSchedule, samplingLevels } from '../../electron/engine/schedulers/schedule.js';

const session = await NetworkSession.open(path.resolve('test/fixtures/networks/tiny-eps.onnx'), {
  provider: 'cpu',
  threads: 1,
});
afterAll(() => session.dispose());

function f64(t: Tensor | undefined): Float64Array {
  if (!t) throw new Error('missing tensor');
  return Float64Array.from(t.data as Float32Array | Float64Array);
}

describe("step-for-step parity with diffusers' DDIM schedulers (tiny-eps.onnx)", () => {
  for (const name of ['eta0', 'eta1', 'vpred', 'inverse']) {
    it(`ddim-${name}: every state within 1e-6 of diffusers (float64 tables), NFE = steps`, async () => {
      const file = await readSafetensors(
        path.resolve(`test/fixtures/diffusers/tiny-eps-ddim-${name}.safetensors`),
      );
      const config = JSON.parse(file.metadata.config ?? '{}') as {
        beta_start: number;
        beta_end: number;
        beta_schedule: 'scaled_linear' | 'linear';
        num_train_timesteps: number;
        steps_offset: number;
        prediction_type?: 'epsilon' | 'v_prediction';
      };
      const steps = Number(file.metadata.steps);
      const guidance = Number(file.metadata.guidance);
      const schedule = buildSchedule({
        kind: config.beta_schedule,
        betaStart: config.beta_start,
        betaEnd: config.beta_end,
        trainSteps: config.num_train_timesteps,
      });
      const levels = samplingLevels(config.num_train_timesteps, steps, config.steps_offset);
      const states = f64(file.tensors.get('sample_f64'));
      const n = states.length / (steps + 1);
      const uncond = file.tensors.get('encoder_hidden_states_uncond')?.data as Float32Array;
      const cond = file.tensors.get('encoder_hidden_states_cond')?.data as Float32Array;
      const text = new Float32Array([...uncond, ...cond]);
      const fed: Float64Array[] = [];
      const timesteps: number[] = [];
      const eps: NoiseEstimator = async (z, t) => {
        fed.push(Float64Array.from(z));
        timesteps.push(t[0] as number);
        const out = await session.run(
          {
            sample: { data: Float32Array.from([...z, ...z]), dims: [2, 4, 8, 8] },
            timestep: { data: [t[0] as number, t[0] as number], dims: [2] },
            encoder_hidden_states: { data: text, dims: [2, 8, 32] },
          },
          'out_sample',
        );
        return combineGuidance(Float64Array.from(out.data), guidance);
      };
      const start = states.subarray(0, n);
      let result: Float64Array;
      let nfe: number;
      if (name === 'inverse') {
        const r = await invertDdimNaive(schedule, start, levels, eps);
        [result, nfe] = [r.sample, r.nfe];
      } else {
        const noise = f64(
          file.tensors.get('noise') ?? {
            dtype: 'F64',
            shape: [],
            data: new Float64Array(steps * n),
          },
        );
        const r = await sampleDdim(schedule, start, levels, eps, {
          eta: Number(file.metadata.eta),
          noise: (k) => noise.subarray(k * n, (k + 1) * n),
          prediction: config.prediction_type ?? 'epsilon',
        });
        [result, nfe] = [r.sample, r.nfe];
      }
      const expectedTimesteps = Array.from(
        file.tensors.get('timesteps')?.data as BigInt64Array,
        Number,
      );
      expect(timesteps).toEqual(expectedTimesteps);
      expect(nfe).toBe(steps);
      let worst = 0;
      fed.forEach(
        (z, k) => (worst = Math.max(worst, maxAbsDiff(z, states.subarray(k * n, (k + 1) * n)))),
      );
      worst = Math.max(worst, maxAbsDiff(result, states.subarray(steps * n)));
      const shipped = f64(file.tensors.get('prev_sample')).subarray((steps - 1) * n);
      console.log(
        `ddim-${name}: max |state − diffusers float64| ${worst.toExponential(2)}; ` +
          `final vs diffusers as shipped (float32) ${maxAbsDiff(result, shipped).toExponential(2)}`,
      );
      expect(worst).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(result, shipped)).toBeLessThan(1e-5);
    });
  }
});
