// The distributed side of the `retrace` command: `restore --queue/--queue-name/--shard`,
// `retrace worker`, `retrace queue status|cancel NAME` and `retrace report merge`. How it works:
// docs/queue.md. main.ts wires it in with `queueCommands(context)`: `restore` asks it first
// whether the run is distributed, and `register` adds the commands and restore's options.
import { Command, InvalidArgumentError } from 'commander';
import type { RestoreParams } from '../contract/jobs.js';
import type { Engine } from '../engine/engine.js';
import { RetraceError } from '../engine/errors.js';
import type { RunOptions } from '../engine/progress.js';
import { cancelQueue, queueStatus } from '../engine/queue/admin.js';
import { mergeReports, type ReportItem } from '../engine/queue/merge.js';
import { restoreWithQueue } from '../engine/queue/producer.js';
import { parseRedisUrl, type RedisTarget } from '../engine/queue/redis.js';
import { formatShard, inShard, parseShard } from '../engine/queue/shard.js';
import { runWorker } from '../engine/queue/worker.js';
import { floatOption, intOption } from './options.js';

export interface QueueCliContext {
  /** The engine, opened with the global options. */
  engine(): Engine;
  /** Progress reporting and the Ctrl-C signal for one command. */
  run(): RunOptions;
  print(value: unknown, json: boolean | undefined, human: string): void;
  /** A line on stderr that does not tear a progress bar. */
  log(message: string): void;
  setExitCode(code: number): void;
  /** Whether --quiet was given. */
  quiet(): boolean;
}

export const DEFAULT_QUEUE = 'retrace';
const EXIT_FAILED = 1;
const EXIT_CANCELLED = 130;

function queueNameOption(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(value))
    throw new InvalidArgumentError(
      `--queue-name must be 1–100 letters, digits, '.', '_' or '-', got "${value}".`,
    );
  return value;
}

/** The Redis of `--queue [URL]`: the URL given, else $RETRACE_QUEUE (which keeps it out of `ps`). */
function targetOf(value: unknown): RedisTarget {
  const url = typeof value === 'string' ? value : process.env.RETRACE_QUEUE;
  if (!url)
    throw new RetraceError(
      'BAD_INPUT',
      '--queue: no Redis URL given and RETRACE_QUEUE is not set (e.g. --queue redis://HOST:6379/0)',
    );
  return parseRedisUrl(url, typeof value === 'string' ? '--queue' : 'RETRACE_QUEUE');
}

const seconds = (s: number) => Math.round(s * 1000);

/**
 * After a Redis failure BullMQ may still hold a socket or a reconnect timer; the command has
 * reported and finished, so it must not hang on them.
 */
function exitSoon(): void {
  setTimeout(() => process.exit(process.exitCode ?? EXIT_FAILED), 2000).unref();
}

/** Rethrows a failure to reach Redis after making sure the process will not hang on it. */
function failFast(err: unknown): never {
  exitSoon();
  throw err;
}

function restoreParams(paths: string[], o: Record<string, unknown>): RestoreParams {
  return {
    model: o.model as string,
    inputs: paths,
    outputDir: o.out as string,
    recursive: Boolean(o.recursive),
    skipExisting: Boolean(o.skipExisting),
    seed: o.seed as number,
    format: o.format as RestoreParams['format'] & string,
    ...(o.deterministic ? { deterministic: true } : {}),
    ...(o.tile !== undefined ? { tile: o.tile as number } : {}),
    ...(o.overlap !== undefined ? { overlap: o.overlap as number } : {}),
    ...(o.report !== undefined ? { report: o.report as string } : {}),
  };
}

export function queueCommands(ctx: QueueCliContext) {
  const logFailure = (item: ReportItem, done: number, total: number) => {
    if (item.status === 'failed') ctx.log(`failed (${done}/${total}): ${item.error ?? ''}`);
  };

  /**
   * Runs `retrace restore` when --queue or --shard was given and returns true; false leaves the
   * run to the local batch.
   */
  async function restore(paths: string[], o: Record<string, unknown>): Promise<boolean> {
    if (o.queue === undefined && o.shard === undefined) return false;
    const shard = typeof o.shard === 'string' ? parseShard(o.shard) : undefined;
    const select = shard
      ? (input: { relative: string }) => inShard(input.relative, shard)
      : undefined;
    const reportExtra = shard ? { shard } : undefined;
    const params = restoreParams(paths, o);
    const json = o.json as boolean | undefined;
    const engine = ctx.engine();
    const run = ctx.run();
    let items: readonly (ReportItem | undefined)[];
    let report: string;
    let csv: string;
    let extra: Record<string, unknown> = {};
    let cancelled: boolean;
    if (o.queue !== undefined) {
      const target = targetOf(o.queue);
      const queueName = o.queueName as string;
      let result;
      try {
        result = await restoreWithQueue(engine, params, {
          target,
          queueName,
          attempts: o.attempts as number,
          redisWaitMs: seconds(o.redisWait as number),
          ...(select ? { select } : {}),
          ...(reportExtra ? { reportExtra } : {}),
          ...(run.signal ? { signal: run.signal } : {}),
          ...(run.onProgress ? { onProgress: run.onProgress } : {}),
          onItem: logFailure,
          log: (line) => {
            if (!ctx.quiet()) ctx.log(line);
          },
        });
      } catch (err) {
        exitSoon();
        if (err instanceof RetraceError && err.code === 'RUNTIME')
          throw new RetraceError(
            'RUNTIME',
            `${err.message}; the jobs already queued stay with Redis (if it keeps them): run the same command again to finish`,
          );
        throw err;
      }
      if (result.detached) {
        ctx.log(
          `retrace: stopped following; ${result.outstanding} file${result.outstanding === 1 ? '' : 's'} ` +
            `stay queued on ${queueName} for the workers (retrace queue status ${queueName}; ` +
            `run the same command again for the report)`,
        );
        ctx.setExitCode(EXIT_CANCELLED);
        return true;
      }
      ({ items, report, csv } = result);
      cancelled = result.removed > 0;
      extra = {
        queue: queueName,
        enqueued: result.enqueued,
        existing: result.existing,
        retried: result.items.filter((i) => (i.attempts ?? 1) > 1).length,
      };
    } else {
      const result = await engine.restore(params, {
        ...run,
        onItem: logFailure,
        ...(select ? { select } : {}),
        ...(reportExtra ? { reportExtra } : {}),
      });
      ({ items, report, csv } = result);
      cancelled = result.cancelled;
    }
    const count = (s: string) => items.filter((i) => i?.status === s).length;
    const summary = {
      ok: count('ok'),
      failed: count('failed'),
      skipped: count('skipped'),
      cancelled,
      report,
      csv,
      ...(shard ? { shard: formatShard(shard) } : {}),
      ...extra,
    };
    ctx.print(
      summary,
      json,
      `${summary.ok} restored, ${summary.skipped} skipped, ${summary.failed} failed` +
        `${shard ? ` (shard ${formatShard(shard)})` : ''}; report ${report}`,
    );
    if (cancelled) ctx.setExitCode(EXIT_CANCELLED);
    else if (summary.failed > 0) ctx.setExitCode(EXIT_FAILED);
    return true;
  }

  function register(program: Command): void {
    const restoreCommand = program.commands.find((c) => c.name() === 'restore');
    restoreCommand
      ?.option(
        '--queue [url]',
        'enqueue one job per file on this Redis (redis://[:PASSWORD@]HOST[:PORT][/DB], rediss:// for TLS; default $RETRACE_QUEUE) for `retrace worker`s, follow them and write the report',
      )
      .option(
        '--queue-name <name>',
        'the queue (one per batch or shared)',
        queueNameOption,
        DEFAULT_QUEUE,
      )
      .option(
        '--shard <I/N|auto>',
        'only the files whose path hashes to shard I of N; auto: from SLURM_ARRAY_TASK_ID/COUNT, or JOB_COMPLETION_INDEX with auto/N',
      )
      .option(
        '--attempts <n>',
        'with --queue: starts of a job that fails for a reason other than its file (a bad file fails once)',
        intOption('--attempts', 1, 100),
        3,
      )
      .option(
        '--redis-wait <s>',
        'with --queue: give up when Redis is unreachable for this long',
        floatOption('--redis-wait', 0.1, 3600),
        15,
      );

    program
      .command('worker')
      .description('restore files queued by `retrace restore --queue` (run one per machine or GPU)')
      .option('--queue [url]', 'the Redis of the queue (default $RETRACE_QUEUE)')
      .option('--queue-name <name>', 'the queue', queueNameOption, DEFAULT_QUEUE)
      .option('--concurrency <n>', 'files restored at once', intOption('--concurrency', 1, 64), 1)
      .option(
        '--lease-ms <ms>',
        'how long a file stays with a worker that stopped answering before another takes it',
        intOption('--lease-ms', 500, 3_600_000),
        30_000,
      )
      .option(
        '--max-stalls <n>',
        'times a file may be taken again after its worker was lost, before it fails',
        intOption('--max-stalls', 0, 100),
        2,
      )
      .option(
        '--grace <s>',
        'on SIGTERM/Ctrl-C: let the files in hand finish for this long, then hand them back',
        floatOption('--grace', 0, 3600),
        20,
      )
      .option(
        '--idle-exit <s>',
        'exit (0) once the queue has had nothing waiting or running for this long',
        floatOption('--idle-exit', 0, 86_400),
      )
      .option(
        '--redis-wait <s>',
        'exit (1) when Redis is unreachable for this long',
        floatOption('--redis-wait', 0.1, 3600),
        15,
      )
      .action(async (o: Record<string, unknown>) => {
        const target = targetOf(o.queue);
        const engine = ctx.engine();
        const run = ctx.run();
        const quiet = ctx.quiet();
        try {
          const summary = await runWorker(engine, {
            target,
            queueName: o.queueName as string,
            concurrency: o.concurrency as number,
            leaseMs: o.leaseMs as number,
            maxStalls: o.maxStalls as number,
            redisWaitMs: seconds(o.redisWait as number),
            graceMs: seconds(o.grace as number),
            ...(o.idleExit !== undefined ? { idleExitMs: seconds(o.idleExit as number) } : {}),
            ...(run.signal ? { signal: run.signal } : {}),
            log: (line) => {
              if (!quiet || line.startsWith('failed')) ctx.log(line);
            },
            verbose: !quiet,
          });
          ctx.log(
            `worker stopped (${summary.reason === 'idle' ? 'queue idle' : 'signal'}): ${summary.restored} restored, ` +
              `${summary.failed} failed, ${summary.handedBack} handed back`,
          );
        } catch (err) {
          exitSoon();
          if (err instanceof RetraceError && err.code === 'RUNTIME')
            throw new RetraceError(
              'RUNTIME',
              `worker: ${err.message}; its files in hand were left unwritten and go back to the queue when their lease expires`,
            );
          throw err;
        }
      });

    const queue = program.command('queue').description('look at or cancel a restore queue');
    queue
      .command('status')
      .argument('[name]', 'the queue', DEFAULT_QUEUE)
      .option('--queue [url]', 'the Redis of the queue (default $RETRACE_QUEUE)')
      .option('--redis-wait <s>', 'give up after', floatOption('--redis-wait', 0.1, 3600), 10)
      .option('--json', 'print JSON')
      .action(async (name: string, o: Record<string, unknown>) => {
        queueNameOption(name);
        const s = await queueStatus(targetOf(o.queue), name, seconds(o.redisWait as number)).catch(
          failFast,
        );
        ctx.print(
          s,
          o.json as boolean | undefined,
          `queue ${s.queue} at ${s.redis}: ${s.waiting} waiting, ${s.active} running, ${s.delayed} delayed, ` +
            `${s.completed} done, ${s.failed} failed${s.paused ? `, ${s.paused} paused` : ''}; ` +
            `${s.workers ?? 'unknown number of'} worker${s.workers === 1 ? '' : 's'} connected`,
        );
      });
    queue
      .command('cancel')
      .argument('[name]', 'the queue', DEFAULT_QUEUE)
      .option('--queue [url]', 'the Redis of the queue (default $RETRACE_QUEUE)')
      .option(
        '--purge',
        'also forget every finished job (the same batch can then be enqueued from scratch)',
      )
      .option('--redis-wait <s>', 'give up after', floatOption('--redis-wait', 0.1, 3600), 10)
      .option('--json', 'print JSON')
      .action(async (name: string, o: Record<string, unknown>) => {
        queueNameOption(name);
        const r = await cancelQueue(
          targetOf(o.queue),
          name,
          seconds(o.redisWait as number),
          Boolean(o.purge),
        ).catch(failFast);
        ctx.print(
          r,
          o.json as boolean | undefined,
          r.purged
            ? `queue ${name}: removed all ${r.removed} jobs`
            : `queue ${name}: removed ${r.removed} job${r.removed === 1 ? '' : 's'} no worker had taken; ` +
                `${r.active} in workers' hands will finish`,
        );
      });

    program
      .command('report')
      .description('restore reports')
      .command('merge')
      .description('join the reports of the shards (or queue runs) of one batch into one')
      .argument('<reports...>', 'JSON reports (retrace-report.json of each shard)')
      .requiredOption('--out <file>', 'the merged report (.json; the CSV goes beside it)')
      .option('--json', 'print the summary as one JSON line')
      .action(async (reports: string[], o: Record<string, unknown>) => {
        const r = await mergeReports(reports, o.out as string);
        const count = (s: string) => r.items.filter((i) => i.status === s).length;
        const summary = {
          reports: r.reports,
          ok: count('ok'),
          failed: count('failed'),
          skipped: count('skipped'),
          report: r.json,
          csv: r.csv,
        };
        ctx.print(
          summary,
          o.json as boolean | undefined,
          `merged ${r.reports} reports: ${summary.ok} restored, ${summary.skipped} skipped, ` +
            `${summary.failed} failed; report ${r.json}`,
        );
      });
  }

  return { restore, register };
}
