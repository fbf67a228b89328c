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
    it(`ddim-${name}: every state matches diffusers' float64 to float64 rounding, the network its recorded output to float32 rounding, NFE = steps`, async () => {
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
      // The samplers are fed the guided outputs diffusers recorded (float64), so the states can be
      // compared with diffusers' to float64 rounding on any CPU; the network is still run on
      // every state and checked against the recorded output within float32 rounding (below).
      const recorded = f64(file.tensors.get('model_output_f64'));
      let networkWorst = 0;
      let outputScale = 0;
      const eps: NoiseEstimator = async (z, t) => {
        const k = fed.length;
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
        const own = recorded.subarray(k * n, (k + 1) * n);
        const guided = combineGuidance(Float64Array.from(out.data), guidance);
        networkWorst = Math.max(networkWorst, maxAbsDiff(guided, own));
        outputScale = Math.max(outputScale, ...Array.from(out.data, Math.abs));
        return Float64Array.from(own);
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
      // Float32 network outputs from two runtimes (or two CPUs' kernels) differ by a few units
      // in the last place of each of the two branches; guidance g multiplies a branch difference
      // by up to 1 + 2g. 64 ulps of the largest output covers any kernel's summation order for
      // this network (a few dozen terms per output).
      const networkBound = 64 * 2 ** -23 * outputScale * (1 + 2 * guidance);
      // Float64 states after 20 steps of a few operations each, values of order 1.
      const stateBound = 1e-12;
      console.log(
        `ddim-${name}: max |state − diffusers float64| ${worst.toExponential(2)} (≤ ${stateBound}); ` +
          `network vs recorded output ${networkWorst.toExponential(2)} (≤ ${networkBound.toExponential(2)}); ` +
          `final vs diffusers as shipped (float32) ${maxAbsDiff(result, shipped).toExponential(2)}`,
      );
      expect(worst).toBeLessThanOrEqual(stateBound);
      expect(networkWorst).toBeLessThanOrEqual(networkBound);
      // diffusers itself keeps float32 states: its result differs from the float64 one by
      // float32 rounding accumulated over the steps (20 steps × a few ulps of values of order 1).
      expect(maxAbsDiff(result, shipped)).toBeLessThan(20 * 8 * 2 ** -23 * 4);
    });
  }
});
