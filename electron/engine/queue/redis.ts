// Where the queue lives: a `redis://` or `rediss://` (TLS) URL, parsed once into connection
// options, and printed only in redacted form — a password never reaches output, logs or reports
// (every message that may quote it is scrubbed). `RedisWatch` turns a Redis that is gone for longer
// than a grace period into one clear error instead of endless reconnect attempts.
import { isIP } from 'node:net';
import type { RedisClient, RedisOptions } from 'bullmq';
import { RetraceError } from '../errors.js';

export interface RedisTarget {
  /** The URL with any password replaced by `***`: the only form that may be printed. */
  display: string;
  host: string;
  port: number;
  db: number;
  tls: boolean;
  username?: string;
  password?: string;
}

/** `text` with the user-info part of a URL-looking string hidden (for messages about bad URLs). */
export function redactUrl(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, (_m, scheme: string) => `${scheme}***@`);
}

/**
 * Parses `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` or `rediss://…` (TLS). Throws a BAD_INPUT
 * error naming `option` and quoting the URL redacted.
 */
export function parseRedisUrl(text: string, option = '--queue'): RedisTarget {
  const bad = (why: string) =>
    new RetraceError(
      'BAD_INPUT',
      `${option}: ${why}; expected redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://… (TLS), got "${redactUrl(text)}"`,
    );
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw bad('not a URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw bad('not a Redis URL');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw bad('no host');
  const port = url.port === '' ? 6379 : Number(url.port);
  const dbText = url.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d+$/.test(dbText)) throw bad(`database "${dbText}" is not a number`);
  const db = dbText === '' ? 0 : Number(dbText);
  if (db > 65535) throw bad(`database ${db} is out of range`);
  if (url.search || url.hash) throw bad('query strings and fragments are not supported');
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw bad('the user or password is not valid percent-encoding');
    }
  };
  const username = url.username ? decode(url.username) : undefined;
  const password = url.password ? decode(url.password) : undefined;
  const tls = url.protocol === 'rediss:';
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const auth =
    password !== undefined
      ? `${url.username}:***@`
      : username !== undefined
        ? `${url.username}@`
        : '';
  return {
    display: `${tls ? 'rediss' : 'redis'}://${auth}${hostPart}:${port}/${db}`,
    host,
    port,
    db,
    tls,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
  };
}

/** `message` with the target's password (as given and percent-encoded) replaced by `***`. */
export function scrub(message: string, target: RedisTarget | undefined): string {
  const secret = target?.password;
  if (!secret) return message;
  let out = message;
  for (const form of new Set([secret, encodeURIComponent(secret)]))
    out = out.split(form).join('***');
  return out;
}

/**
 * Watches the Redis connections of one command. Redis gone (or never reached) for longer than
 * `waitMs` rejects `lost` with one line naming the redacted URL and the last error; a shorter
 * outage is ridden out (BullMQ and ioredis reconnect and carry on).
 */
export class RedisWatch {
  readonly lost: Promise<never>;
  private fail!: (err: RetraceError) => void;
  private readonly clients: RedisClient[] = [];
  private connected = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private lastError = '';
  private stopped = false;

  constructor(
    readonly target: RedisTarget,
    readonly waitMs: number,
  ) {
    this.lost = new Promise<never>((_resolve, reject) => {
      this.fail = reject;
    });
    this.lost.catch(() => undefined); // observed by whoever races it
    this.arm(); // the first connection must come within the same grace
  }

  /** Connection options for BullMQ: reconnects every second at most, each attempt noted. */
  options(): RedisOptions {
    const t = this.target;
    return {
      host: t.host,
      port: t.port,
      db: t.db,
      ...(t.username !== undefined ? { username: t.username } : {}),
      ...(t.password !== undefined ? { password: t.password } : {}),
      // TLS checks the certificate against the host name (SNI only for names, not addresses).
      ...(t.tls ? { tls: isIP(t.host) ? {} : { servername: t.host } } : {}),
      maxRetriesPerRequest: null,
      connectTimeout: Math.max(1000, Math.min(this.waitMs, 10_000)),
      retryStrategy: (times: number) => {
        this.noteDown();
        return Math.min(100 * times, 1000);
      },
    };
  }

  /** Records an error from a BullMQ object or client (scrubbed) and starts the grace timer. */
  noteError(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    if (message) this.lastError = scrub(message, this.target);
    if (this.clients.some((c) => c.status !== 'ready') || !this.connected) this.noteDown();
  }

  /** Follows one client BullMQ opened (after it was first ready). */
  track(client: RedisClient): void {
    this.connected = true;
    this.clients.push(client);
    client.on('error', (e: unknown) => this.noteError(e));
    client.on('close', () => this.noteDown());
    client.on('ready', () => this.check(false));
    this.check(false);
  }

  /** Stops watching (the command is closing its connections on purpose). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private noteDown(): void {
    if (!this.stopped && this.timer === undefined) this.arm();
  }

  private arm(): void {
    this.timer = setTimeout(() => this.check(true), this.waitMs);
  }

  private check(expired: boolean): void {
    if (this.stopped) return;
    const up = this.connected && this.clients.every((c) => c.status === 'ready');
    if (up) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    if (!expired) return;
    this.timer = undefined;
    this.stopped = true;
    const seconds = Math.round(this.waitMs / 100) / 10;
    const why = this.lastError ? ` (${this.lastError})` : '';
    this.fail(
      new RetraceError(
        'RUNTIME',
        this.connected
          ? `lost the connection to Redis at ${this.target.display} for ${seconds} s${why}`
          : `cannot reach Redis at ${this.target.display} within ${seconds} s${why}`,
      ),
    );
  }
}
