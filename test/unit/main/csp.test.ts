import { describe, expect, it } from 'vitest';
import { contentSecurityPolicy, securityHeaders } from '../../../electron/main/csp.js';

function directives(csp: string): Map<string, string> {
  return new Map(
    csp.split(';').map((d) => {
      const [name = '', ...rest] = d.trim().split(/\s+/);
      return [name, rest.join(' ')];
    }),
  );
}

describe('content security policy', () => {
  const csp = directives(contentSecurityPolicy());
  it('denies by default and allows scripts only from the app', () => {
    expect(csp.get('default-src')).toBe("'none'");
    expect(csp.get('script-src')).toBe("'self'");
    expect(csp.get('object-src')).toBe("'none'");
    expect(csp.get('base-uri')).toBe("'none'");
    expect(csp.get('frame-ancestors')).toBe("'none'");
  });
  it('has no unsafe-inline, unsafe-eval or wildcard anywhere', () => {
    const text = contentSecurityPolicy();
    expect(text).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
  });
  it('loads images only from the app and the retrace image server', () => {
    expect(csp.get('img-src')?.split(' ').sort()).toEqual(["'self'", 'blob:', 'data:', 'retrace:']);
    expect(csp.get('connect-src')).toBe("'self'");
  });
  it('is sent with nosniff on every app response', () => {
    const h = securityHeaders();
    expect(h['Content-Security-Policy']).toBe(contentSecurityPolicy());
    expect(h['X-Content-Type-Options']).toBe('nosniff');
  });
});
