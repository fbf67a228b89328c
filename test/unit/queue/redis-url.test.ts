// Redis URLs (issue 13): parsed into connection options, printed only redacted; every message
// that could quote the password is scrubbed.
import { describe, expect, it } from 'vitest';
import { parseRedisUrl, redactUrl, scrub } from '../../../electron/engine/queue/redis.js';

describe('parseRedisUrl', () => {
  it('reads host, port, database, user, password and TLS', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6380/2')).toEqual({
      display: 'redis://127.0.0.1:6380/2',
      host: '127.0.0.1',
      port: 6380,
      db: 2,
      tls: false,
    });
    expect(parseRedisUrl('redis://queue.lan')).toMatchObject({ port: 6379, db: 0 });
    const t = parseRedisUrl('rediss://worker:s3cr%40t@redis.example:6390/1');
    expect(t).toMatchObject({
      tls: true,
      username: 'worker',
      password: 's3cr@t',
      host: 'redis.example',
    });
    expect(t.display).toBe('rediss://worker:***@redis.example:6390/1');
    expect(parseRedisUrl('redis://:secret@[::1]:7000').display).toBe('redis://:***@[::1]:7000/0');
  });

  it('refuses other URLs in one line that names the option and never the password', () => {
    const cases = [
      'http://:secret@host',
      'redis://:secret@host/notadb',
      'redis://:secret@',
      'redis://:secret@host/1?tls=1',
      'not a url secret',
      'redis://:secret@host:99999',
    ];
    for (const text of cases) {
      let message = '';
      try {
        parseRedisUrl(text, '--queue');
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, text).toMatch(/^--queue: /);
      expect(message, text).not.toContain('\n');
      if (text.includes('@')) expect(message, text).not.toContain('secret');
    }
  });
});

describe('redaction', () => {
  it('redactUrl hides the user-info part', () => {
    expect(redactUrl('redis://:pw@h:1/0')).toBe('redis://***@h:1/0');
    expect(redactUrl('rediss://u:pw@h')).toBe('rediss://***@h');
    expect(redactUrl('redis://h:1')).toBe('redis://h:1');
  });

  it('scrub removes the password, as given and percent-encoded', () => {
    const t = parseRedisUrl('redis://:p%40ss@h');
    expect(scrub('AUTH p@ss failed; url redis://:p%40ss@h', t)).toBe(
      'AUTH *** failed; url redis://:***@h',
    );
    expect(scrub('nothing here', parseRedisUrl('redis://h'))).toBe('nothing here');
  });
});
