// Shards for batch schedulers (Slurm job arrays, Kubernetes indexed Jobs): `--shard I/N` keeps the
// files whose relative path hashes to I of N. The hash depends on the path alone, so N runs cover
// the folder exactly once (disjoint, and their union is the whole), whatever order they run in
// and on whichever machines; `--shard auto` reads the index and count from the scheduler.
import { createHash } from 'node:crypto';
import { RetraceError } from '../errors.js';

export interface Shard {
  /** 1 … count. */
  index: number;
  count: number;
}

export const MAX_SHARDS = 100_000;

/** The shard (1 … count) a relative path belongs to. */
export function shardOf(relative: string, count: number): number {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new RangeError(`shard count must be a positive integer, got ${count}`);
  }
  const digest = createHash('sha256').update(`retrace-shard/1\0${relative}`).digest();
  return (digest.readUIntBE(0, 6) % count) + 1;
}

export function inShard(relative: string, shard: Shard): boolean {
  return shardOf(relative, shard.count) === shard.index;
}

export function formatShard(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

type Env = Readonly<Record<string, string | undefined>>;

function whole(value: string | undefined): number | undefined {
  if (value === undefined || !/^\s*\d+\s*$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Parses `--shard`: `I/N` (1 ≤ I ≤ N), `auto` or `auto/N`. `auto` takes the index from
 * SLURM_ARRAY_TASK_ID (counted from SLURM_ARRAY_TASK_MIN in steps of SLURM_ARRAY_TASK_STEP) with
 * the count SLURM_ARRAY_TASK_COUNT, or from Kubernetes' JOB_COMPLETION_INDEX (0-based) with the
 * count given as `auto/N` or in RETRACE_SHARD_COUNT (Kubernetes does not pass the completions).
 */
export function parseShard(text: string, env: Env = process.env, option = '--shard'): Shard {
  const bad = (why: string) => new RetraceError('BAD_INPUT', `${option} ${text}: ${why}`);
  const check = (index: number, count: number, source: string): Shard => {
    if (count < 1 || count > MAX_SHARDS)
      throw bad(`the shard count must be between 1 and ${MAX_SHARDS}, got ${count}${source}`);
    if (index < 1 || index > count)
      throw bad(`shard ${index} is not between 1 and ${count}${source}`);
    return { index, count };
  };
  const explicit = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (explicit) return check(Number(explicit[1]), Number(explicit[2]), '');
  const auto = /^\s*auto(?:\s*\/\s*(\d+))?\s*$/.exec(text);
  if (!auto) throw bad('expected I/N (e.g. 2/8), auto or auto/N');
  const stated = auto[1] !== undefined ? Number(auto[1]) : undefined;

  const slurmId = env.SLURM_ARRAY_TASK_ID;
  if (slurmId !== undefined) {
    const id = whole(slurmId);
    const min = whole(env.SLURM_ARRAY_TASK_MIN) ?? 0;
    const step = whole(env.SLURM_ARRAY_TASK_STEP) ?? 1;
    const count = stated ?? whole(env.SLURM_ARRAY_TASK_COUNT);
    if (id === undefined) throw bad(`SLURM_ARRAY_TASK_ID is "${slurmId}", not a number`);
    if (count === undefined)
      throw bad('SLURM_ARRAY_TASK_COUNT is not set; give the count as auto/N');
    if (step < 1 || (id - min) % step !== 0 || id < min)
      throw bad(
        `SLURM_ARRAY_TASK_ID ${id} is not on the array's grid (min ${min}, step ${step}); use --array=A-B[:S]`,
      );
    return check((id - min) / step + 1, count, ' (from SLURM_ARRAY_TASK_*)');
  }
  const k8s = env.JOB_COMPLETION_INDEX;
  if (k8s !== undefined) {
    const index = whole(k8s);
    const count = stated ?? whole(env.RETRACE_SHARD_COUNT);
    if (index === undefined) throw bad(`JOB_COMPLETION_INDEX is "${k8s}", not a number`);
    if (count === undefined)
      throw bad(
        'JOB_COMPLETION_INDEX is set but not the count: give it as auto/N (the Job’s completions) or in RETRACE_SHARD_COUNT',
      );
    return check(index + 1, count, ' (from JOB_COMPLETION_INDEX)');
  }
  throw bad(
    'neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes indexed Job) is set',
  );
}
