// Distributed restore (issue 13) through the built command, on a real Redis (Debian's
// redis-server, started here on 127.0.0.1 on a free port, no persistence, stopped at the end):
// workers that die, a Redis that goes away, a batch enqueued twice, shards and their merged
// report, and a Redis password that must never be printed. The fixture restoration pack keeps
// each file to milliseconds; one 512² photo (121 tiles) gives a worker a file in hand long enough
// to be killed in the middle of it.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve('.');
const bin = path.join(root, 'bin/retrace.js');
const pack = path.join(root, 'test/fixtures/restore-pack');

const redisFound = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;
if (!redisFound) {
  const why =
    'redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)';
  if (process.env.CI === 'true') throw new Error(`queue tests need Redis: ${why}`);
  console.log(`skipping the queue tests: ${why}`);
}

let work: string;
const children = new Set<ChildProcessWithoutNullStreams>();
const servers = new Set<RedisServer>();

// ---- Redis -------------------------------------------------------------------------------

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

interface RedisServer {
  port: number;
  url: string;
  stop(): Promise<void>;
}

async function startRedis(
  options: { port?: number; password?: string; tls?: { cert: string; key: string } } = {},
): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  const dir = await mkdtemp(path.join(work, 'redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    ...(options.password ? ['--requirepass', options.password] : []),
    ...(options.tls
      ? [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--tls-cert-file',
          options.tls.cert,
          '--tls-key-file',
          options.tls.key,
          '--tls-auth-clients',
          'no',
        ]
      : []),
  ];
  const child = spawn('redis-server', args);
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      log += d.toString();
      if (/Ready to accept connections/.test(log)) resolve();
    };
    child.stdout.on('data', onData);
    child.on('exit', (code) => reject(new Error(`redis-server exited ${code}: ${log}`)));
  });
  const closed = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const server: RedisServer = {
    port,
    url: `${options.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}/0`,
    async stop() {
      servers.delete(server);
      if (child.exitCode === null) child.kill('SIGTERM');
      await closed;
    },
  };
  servers.add(server);
  return server;
}

// ---- the command ----------------------------------------------------------------------------

interface Proc {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  /** Resolves when stderr matches. */
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
  exit: Promise<number | null>;
}

function start(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(
    process.execPath,
    [bin, '--threads', '1', '--user-dir', path.join(work, 'u'), ...args],
    { env: { ...process.env, ...env } },
  );
  children.add(child);
  let stdout = '';
  let stderr = '';
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const w of [...waiters]) {
      const m = stderr.match(w.re);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const exit = new Promise<number | null>((resolve) =>
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve(code ?? (signal ? -1 : null));
    }),
  );
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exit,
    waitFor: (re, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const m = stderr.match(re);
        if (m) return resolve(m);
        const timer = setTimeout(
          () => reject(new Error(`no ${re} in ${timeoutMs} ms; stderr:\n${stderr}`)),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v);
          },
        });
        void exit.then(() => {
          const late = stderr.match(re);
          if (late) resolve(late);
        });
      }),
  };
}

async function run(args: string[], env: Record<string, string> = {}) {
  const p = start(args, env);
  const code = await p.exit;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

function worker(
  url: string,
  queue: string,
  extra: string[] = [],
  env: Record<string, string> = {},
): Proc {
  return start(
    ['worker', '--queue', url, '--queue-name', queue, '--lease-ms', '2500', ...extra],
    env,
  );
}

// ---- files --------------------------------------------------------------------------------

async function photo(file: string, width: number, height: number, salt: number) {
  await mkdir(path.dirname(file), { recursive: true });
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 7) + salt * 17) % 253;
  const img = sharp(data, { raw: { width, height, channels: 3 } });
  await (file.endsWith('.jpg') ? img.jpeg() : img.png()).toFile(file);
}

/** 36 good photos (two folders deep, PNG and JPEG, one 512²) and 4 bad files. */
async function makeFolder(dir: string): Promise<{ good: string[]; bad: string[] }> {
  const good: string[] = [];
  for (let i = 0; i < 35; i++) {
    const rel = `${['', 'a/', 'a/b c/'][i % 3]}p${String(i).padStart(2, '0')}.${i % 4 === 0 ? 'jpg' : 'png'}`;
    await photo(path.join(dir, rel), 24 + (i % 5) * 4, 20 + (i % 3) * 8, i);
    good.push(rel);
  }
  await photo(path.join(dir, 'big.png'), 512, 512, 99);
  good.push('big.png');
  const bad = ['bad1.png', 'a/bad2.jpg', 'a/b c/empty.png', 'zz.png'];
  await writeFile(path.join(dir, bad[0] as string), 'not a png at all');
  await writeFile(path.join(dir, bad[1] as string), Buffer.from([0xff, 0xd8, 0xff, 0x00, 1, 2]));
  await writeFile(path.join(dir, bad[2] as string), Buffer.alloc(0));
  await writeFile(path.join(dir, bad[3] as string), Buffer.from('\x89PNG\r\n\x1a\n-cut-'));
  return { good: good.sort(), bad: bad.sort() };
}

async function digests(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.name.startsWith('retrace-report')) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, file).split(path.sep).join('/')] = createHash('sha256')
      .update(await readFile(file))
      .digest('hex');
  }
  return out;
}

async function partials(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir, { recursive: true })).filter((f) => f.includes('.retrace-partial'));
}

interface ReportItem {
  input: string;
  status: string;
  output?: string;
  error?: string;
  seconds: number;
  attempts?: number;
  retried?: string;
}
interface Report {
  summary: Record<string, unknown>;
  items: ReportItem[];
  [k: string]: unknown;
}
const readReport = async (file: string) => JSON.parse(await readFile(file, 'utf8')) as Report;

/** Every `restored X` / `failed X` line of workers' stderr, by file. */
function tally(procs: Proc[], what: 'restored' | 'failed'): Map<string, number> {
  const counts = new Map<string, number>();
  const re = what === 'restored' ? /^restored (.+) in [\d.]+ s$/ : /^failed (.+?): /;
  for (const p of procs)
    for (const line of p.stderr().split('\n')) {
      const m = re.exec(line);
      if (m) counts.set(m[1] as string, (counts.get(m[1] as string) ?? 0) + 1);
    }
  return counts;
}

const stackTrace = /\n\s+at /;

// ---- the tests ------------------------------------------------------------------------------

let folder: string;
let files: { good: string[]; bad: string[] };
let localOut: string;
let localReport: Report;
let redis: RedisServer;

describe.skipIf(!redisFound)('retrace restore --queue / worker / --shard on a real Redis', () => {
  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'retrace-queue-'));
    folder = path.join(work, 'photos');
    files = await makeFolder(folder);
    redis = await startRedis();
    // The reference: a local batch of the same folder with the same seed.
    localOut = path.join(work, 'local');
    const r = await run([
      'restore',
      folder,
      '--recursive',
      '--model',
      pack,
      '--out',
      localOut,
      '--seed',
      '11',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(1);
    localReport = await readReport(path.join(localOut, 'retrace-report.json'));
    expect(localReport.summary).toMatchObject({ total: 40, ok: 36, failed: 4 });
  }, 120_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const s of [...servers]) await s.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('three workers, one SIGKILLed with a file in hand: every file once, byte-identical to a local batch', async () => {
    const out = path.join(work, 'queued');
    const producer = start([
      'restore',
      folder,
      '--recursive',
      '--model',
      pack,
      '--out',
      out,
      '--seed',
      '11',
      '--queue',
      redis.url,
      '--queue-name',
      'a1',
      '--json',
    ]);
    await producer.waitFor(/queued 40 files/);
    const workers = [0, 1, 2].map(() => worker(redis.url, 'a1'));
    // Whichever worker takes the 512² photo is killed as soon as it says it has it.
    const victim = await Promise.race(
      workers.map((w) => w.waitFor(/^started big\.png$/m, 60_000).then(() => w)),
    );
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    expect(await victim.exit).toBe(-1);
    const code = await producer.exit;
    const retryAfter = (Date.now() - killedAt) / 1000;
    const others = workers.filter((w) => w !== victim);
    for (const w of others) w.child.kill('SIGTERM');
    for (const w of others) expect(await w.exit, w.stderr()).toBe(0);

    expect(code, producer.stderr()).toBe(1); // the bad files
    expect(producer.stderr()).not.toMatch(stackTrace);
    const summary = JSON.parse(producer.stdout()) as Record<string, unknown>;
    expect(summary).toMatchObject({ ok: 36, failed: 4, skipped: 0, enqueued: 40, retried: 1 });
    const report = await readReport(path.join(out, 'retrace-report.json'));
    expect(report.items.map((i) => i.input)).toEqual(localReport.items.map((i) => i.input));
    const byInput = new Map(report.items.map((i) => [i.input, i]));
    for (const bad of files.bad) {
      expect(byInput.get(bad)?.status, bad).toBe('failed');
      expect(byInput.get(bad)?.error, bad).toContain(bad);
      expect(byInput.get(bad)?.attempts, bad).toBeUndefined(); // failed once, not retried
    }
    for (const good of files.good) expect(byInput.get(good)?.status, good).toBe('ok');
    // The killed worker's file: taken again after its lease, and the report says so.
    const big = byInput.get('big.png');
    expect(big?.attempts).toBe(2);
    expect(big?.retried).toMatch(/lease expired/);
    console.log(
      `killed worker's file restored by another ${retryAfter.toFixed(1)} s after the kill: ${big?.retried}`,
    );
    // The same errors as a local batch.
    const localBy = new Map(localReport.items.map((i) => [i.input, i]));
    for (const bad of files.bad) expect(byInput.get(bad)?.error).toBe(localBy.get(bad)?.error);

    // Every good file restored exactly once across the workers (the victim never finished big.png),
    // every bad file failed exactly once.
    const restored = tally(workers, 'restored');
    expect([...restored.keys()].sort()).toEqual(files.good);
    expect([...restored.values()].every((n) => n === 1)).toBe(true);
    expect(victim.stderr()).not.toMatch(/^restored big\.png/m);
    const failed = tally(workers, 'failed');
    expect([...failed.keys()].sort()).toEqual(files.bad);
    expect([...failed.values()].every((n) => n === 1)).toBe(true);
    // More than one worker did work.
    expect(workers.filter((w) => /^restored /m.test(w.stderr())).length).toBeGreaterThan(1);

    expect(await digests(out)).toEqual(await digests(localOut));
    expect(await partials(out)).toEqual([]);
    expect(await partials(folder)).toEqual([]);
  }, 120_000);

  it('SIGTERM on a worker: the file in hand is finished, or with --grace 0 handed back at once', async () => {
    const src = path.join(work, 'term');
    await photo(path.join(src, 'big1.png'), 512, 512, 1);
    await photo(path.join(src, 'big2.png'), 512, 512, 2);
    for (let i = 0; i < 3; i++) await photo(path.join(src, `s${i}.png`), 32, 32, i);
    const out = path.join(work, 'term-out');
    const producer = start([
      'restore',
      src,
      '--model',
      pack,
      '--out',
      out,
      '--queue',
      redis.url,
      '--queue-name',
      'term',
      '--json',
    ]);
    await producer.waitFor(/queued 5 files/);
    const finisher = worker(redis.url, 'term');
    await finisher.waitFor(/^started big1\.png$/m);
    finisher.child.kill('SIGTERM');
    expect(await finisher.exit).toBe(0);
    expect(finisher.stderr()).toMatch(/^restored big1\.png/m);
    expect(finisher.stderr()).not.toMatch(/^started big2\.png/m);
    const quitter = worker(redis.url, 'term', ['--grace', '0']);
    await quitter.waitFor(/^started big2\.png$/m);
    quitter.child.kill('SIGTERM');
    expect(await quitter.exit).toBe(0);
    expect(quitter.stderr()).toMatch(/^handed back big2\.png$/m);
    const last = worker(redis.url, 'term', ['--idle-exit', '1']);
    expect(await producer.exit, producer.stderr()).toBe(0);
    expect(await last.exit).toBe(0);
    expect(last.stderr()).toMatch(/^started big2\.png \(attempt 2\)$/m);
    const report = await readReport(path.join(out, 'retrace-report.json'));
    const big2 = report.items.find((i) => i.input === 'big2.png');
    expect(big2).toMatchObject({ status: 'ok', attempts: 2 });
    expect(big2?.retried).toMatch(/handed back/);
    expect(report.items.filter((i) => i.status === 'ok')).toHaveLength(5);
    expect(await partials(out)).toEqual([]);
  }, 120_000);

  it('enqueued twice (and Ctrl-C on the first producer): no file restored twice; workers keep going', async () => {
    const out = path.join(work, 'twice');
    const args = [
      'restore',
      folder,
      '--recursive',
      '--model',
      pack,
      '--out',
      out,
      '--seed',
      '11',
      '--queue',
      redis.url,
      '--queue-name',
      'a3',
      '--json',
    ];
    const first = start(args);
    await first.waitFor(/queued 40 files/);
    first.child.kill('SIGINT'); // Ctrl-C: stop following, leave the jobs
    expect(await first.exit).toBe(130);
    expect(first.stderr()).toMatch(/stay queued on a3/);
    const workers = [worker(redis.url, 'a3'), worker(redis.url, 'a3')];
    const second = await run(args);
    expect(second.code, second.stderr).toBe(1);
    const summary = JSON.parse(second.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ ok: 36, failed: 4, enqueued: 0, existing: 40 });
    // A third time, with everything done: nothing is restored again.
    const third = await run(args);
    expect(JSON.parse(third.stdout)).toMatchObject({ ok: 36, failed: 4, enqueued: 0 });
    for (const w of workers) w.child.kill('SIGTERM');
    for (const w of workers) expect(await w.exit).toBe(0);
    const restored = tally(workers, 'restored');
    expect([...restored.keys()].sort()).toEqual(files.good);
    expect(
      [...restored.values()].every((n) => n === 1),
      JSON.stringify([...restored]),
    ).toBe(true);
    const status = await run(['queue', 'status', 'a3', '--queue', redis.url, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ completed: 36, failed: 4, waiting: 0 });
    expect(await digests(out)).toEqual(await digests(localOut));
  }, 120_000);

  it('queue cancel removes what no worker has taken; the producer reports those files cancelled (exit 130)', async () => {
    const out = path.join(work, 'cancelled');
    const producer = start([
      'restore',
      folder,
      '--recursive',
      '--model',
      pack,
      '--out',
      out,
      '--queue',
      redis.url,
      '--queue-name',
      'cx',
      '--json',
    ]);
    await producer.waitFor(/no worker is taking jobs from cx yet/);
    const status = await run(['queue', 'status', 'cx', '--queue', redis.url, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ waiting: 40, active: 0, workers: 0 });
    const cancel = await run(['queue', 'cancel', 'cx', '--queue', redis.url]);
    expect(cancel.stdout).toMatch(/removed 40 jobs no worker had taken/);
    expect(await producer.exit).toBe(130);
    const report = await readReport(path.join(out, 'retrace-report.json'));
    expect(report.cancelled).toBe(true);
    expect(report.items).toHaveLength(40);
    expect(
      report.items.every((i) => i.status === 'failed' && /cancelled/.test(i.error ?? '')),
    ).toBe(true);
  }, 60_000);

  it('--shard I/N: the shards are disjoint and cover the folder; report merge equals the single run up to timings', async () => {
    const n = 3;
    const reports: string[] = [];
    const seen: string[] = [];
    for (let i = 1; i <= n; i++) {
      const report = path.join(work, `shard-${i}.json`);
      reports.push(report);
      const r = await run([
        'restore',
        folder,
        '--recursive',
        '--model',
        pack,
        '--out',
        localOut,
        '--seed',
        '11',
        '--shard',
        `${i}/${n}`,
        '--report',
        report,
        '--json',
      ]);
      expect(r.stderr).not.toMatch(stackTrace);
      const items = (await readReport(report)).items.map((x) => x.input);
      expect(items.length).toBeGreaterThan(0);
      seen.push(...items);
    }
    expect(seen.length).toBe(new Set(seen).size); // disjoint
    expect([...seen].sort()).toEqual([...files.good, ...files.bad].sort()); // the whole folder
    // --shard auto from a Kubernetes indexed Job's index: the same files as 2/3.
    const auto = path.join(work, 'shard-auto.json');
    await run(
      [
        'restore',
        folder,
        '--recursive',
        '--model',
        pack,
        '--out',
        localOut,
        '--seed',
        '11',
        '--shard',
        'auto/3',
        '--report',
        auto,
      ],
      { JOB_COMPLETION_INDEX: '1' },
    );
    expect((await readReport(auto)).items).toHaveLength(
      (await readReport(reports[1] as string)).items.length,
    );
    expect((await readReport(auto)).shard).toEqual({ index: 2, count: 3 });

    const merged = path.join(work, 'merged.json');
    const m = await run(['report', 'merge', ...reports, '--out', merged, '--json']);
    expect(m.code, m.stderr).toBe(0);
    const strip = (r: Report) => ({
      ...r,
      summary: { ...r.summary, seconds: 0, started: 0, finished: 0 },
      items: r.items.map((i) => ({ ...i, seconds: 0 })),
    });
    expect(strip(await readReport(merged))).toEqual(strip(localReport));
    expect(existsSync(merged.replace(/\.json$/, '.csv'))).toBe(true);
    // A shard left out, or one given twice: one line naming it.
    const missing = await run([
      'report',
      'merge',
      reports[0] as string,
      reports[2] as string,
      '--out',
      merged,
    ]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/shard 2\/3 missing/);
    // Shards wrote the same bytes as the single run (they wrote over its outputs).
    expect(await digests(localOut)).toEqual(await digests(path.join(work, 'queued')));
  }, 120_000);

  it('Redis stopped mid-run: producer and worker each print one line and exit 1; nothing partial; a rerun finishes', async () => {
    const r2 = await startRedis();
    const src = path.join(work, 'r2');
    for (let i = 0; i < 24; i++) await photo(path.join(src, `q${i}.png`), 160, 160, i);
    const out = path.join(work, 'r2-out');
    const args = [
      'restore',
      src,
      '--model',
      pack,
      '--out',
      out,
      '--seed',
      '3',
      '--queue',
      r2.url,
      '--queue-name',
      'a2',
      '--redis-wait',
      '1.5',
    ];
    const producer = start(args);
    await producer.waitFor(/queued 24 files/);
    const w = worker(r2.url, 'a2', ['--redis-wait', '1.5']);
    await w.waitFor(/^restored q\d+\.png/m);
    await r2.stop();
    const [pc, wc] = await Promise.all([producer.exit, w.exit]);
    expect(pc).toBe(1);
    expect(wc).toBe(1);
    for (const p of [producer, w]) {
      const errors = p
        .stderr()
        .split('\n')
        .filter((l) => l.startsWith('retrace:'));
      expect(errors, p.stderr()).toHaveLength(1);
      expect(errors[0]).toMatch(
        /^retrace: .*lost the connection to Redis at redis:\/\/127\.0\.0\.1:\d+\/0/,
      );
      expect(p.stderr()).not.toMatch(stackTrace);
      // Nothing else about the outage (no reconnect noise from the Redis client).
      expect(p.stderr().match(/ECONNREFUSED/g), p.stderr()).toHaveLength(1);
    }
    expect(await partials(out)).toEqual([]);
    const done = (await readdir(out)).filter((f) => f.endsWith('.png')).length;
    console.log(
      `Redis stopped after ${done} of 24 files; lines:\n${
        producer
          .stderr()
          .split('\n')
          .filter((l) => l.startsWith('retrace:'))[0]
      }\n${
        w
          .stderr()
          .split('\n')
          .filter((l) => l.startsWith('retrace:'))[0]
      }`,
    );
    expect(done).toBeLessThan(24);

    // Redis back (empty: it kept nothing), the same command with --skip-existing, one worker.
    const r3 = await startRedis({ port: r2.port });
    const w2 = worker(r3.url, 'a2', ['--idle-exit', '1']);
    const again = await run([...args, '--skip-existing', '--json']);
    expect(again.code, again.stderr).toBe(0);
    const summary = JSON.parse(again.stdout) as { ok: number; skipped: number; failed: number };
    expect(summary.failed).toBe(0);
    expect(summary.ok + summary.skipped).toBe(24);
    expect(summary.skipped).toBeGreaterThanOrEqual(done);
    expect(await w2.exit).toBe(0);
    expect((await readdir(out)).filter((f) => f.endsWith('.png'))).toHaveLength(24);
    expect(await partials(out)).toEqual([]);
    // The same bytes as one local run of the folder.
    const local = path.join(work, 'r2-local');
    await run(['restore', src, '--model', pack, '--out', local, '--seed', '3']);
    expect(await digests(out)).toEqual(await digests(local));
    await r3.stop();
  }, 120_000);

  it('a Redis password is never printed or written, and a wrong one fails in one line', async () => {
    const secure = await startRedis({ password: 'secret' });
    const url = `redis://:secret@127.0.0.1:${secure.port}/0`;
    const src = path.join(work, 'pw');
    for (let i = 0; i < 3; i++) await photo(path.join(src, `s${i}.png`), 32, 32, i);
    await writeFile(path.join(src, 'broken.png'), 'nope');
    const out = path.join(work, 'pw-out');
    const w = worker(url, 'pw', ['--idle-exit', '1']);
    const p = await run([
      'restore',
      src,
      '--model',
      pack,
      '--out',
      out,
      '--queue',
      url,
      '--queue-name',
      'pw',
      '--json',
    ]);
    expect(p.code, p.stderr).toBe(1);
    expect(JSON.parse(p.stdout)).toMatchObject({ ok: 3, failed: 1 });
    expect(await w.exit).toBe(0);
    const status = await run(['queue', 'status', 'pw', '--queue', url]);
    expect(status.stdout).toMatch(/redis:\/\/:\*\*\*@127\.0\.0\.1/);
    const wrong = await run([
      'queue',
      'status',
      'pw',
      '--queue',
      `redis://:wrongpass@127.0.0.1:${secure.port}/0`,
      '--redis-wait',
      '1',
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrong.stderr).toMatch(/redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/0/);
    const bad = await run(['worker', '--queue', 'redis://:secret@', '--queue-name', 'pw']);
    expect(bad.code).toBe(2);
    const texts = [
      p.stdout,
      p.stderr,
      w.stdout(),
      w.stderr(),
      status.stdout,
      status.stderr,
      bad.stderr,
      await readFile(path.join(out, 'retrace-report.json'), 'utf8'),
      await readFile(path.join(out, 'retrace-report.csv'), 'utf8'),
    ];
    for (const t of texts) expect(t).not.toContain('secret');
    expect(wrong.stderr).not.toContain('wrongpass');
    await secure.stop();
  }, 120_000);
  it('rediss:// (TLS) works end to end; an untrusted certificate fails in one line', async (ctx) => {
    const dir = path.join(work, 'tls');
    await mkdir(dir, { recursive: true });
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    const made = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    if (made.status !== 0) {
      console.log('skipping the TLS test: openssl cannot make a certificate here');
      ctx.skip();
    }
    const server = await startRedis({ tls: { cert, key }, password: 'secret' });
    const url = server.url.replace('rediss://', 'rediss://:secret@');
    const trust = { NODE_EXTRA_CA_CERTS: cert };
    const src = path.join(work, 'tls-in');
    for (let i = 0; i < 3; i++) await photo(path.join(src, `t${i}.png`), 32, 32, i);
    const out = path.join(work, 'tls-out');
    const w = worker(url, 'tls', ['--idle-exit', '1'], trust);
    const p = await run(
      [
        'restore',
        src,
        '--model',
        pack,
        '--out',
        out,
        '--queue',
        url,
        '--queue-name',
        'tls',
        '--json',
      ],
      trust,
    );
    expect(p.code, p.stderr).toBe(0);
    expect(JSON.parse(p.stdout)).toMatchObject({ ok: 3, failed: 0 });
    expect(await w.exit).toBe(0);
    expect(p.stderr).toContain(`queued 3 files on tls at rediss://:***@127.0.0.1:${server.port}/0`);
    const untrusted = await run(['queue', 'status', 'tls', '--queue', url, '--redis-wait', '1']);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr.trim().split('\n')).toHaveLength(1);
    expect(untrusted.stderr).toMatch(/cannot reach Redis at rediss:.*certificate/);
    for (const t of [p.stdout, p.stderr, w.stderr(), untrusted.stderr])
      expect(t).not.toContain('secret');
    await server.stop();
  }, 60_000);
});
