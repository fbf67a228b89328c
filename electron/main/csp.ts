// The Content-Security-Policy of the app's page: scripts and styles only from the app itself, no
// eval, no inline script, images only from the app and the retrace:// image server, no network.
// Sent as a response header by the protocol handler (and by the e2e bridge, so the browser
// tests run the renderer under the very same policy).
export const CSP_DIRECTIVES: Readonly<Record<string, string>> = {
  'default-src': "'none'",
  'script-src': "'self'",
  'style-src': "'self'",
  'img-src': "'self' retrace: data: blob:",
  'font-src': "'self'",
  'connect-src': "'self'",
  'object-src': "'none'",
  'base-uri': "'none'",
  'form-action': "'none'",
  'frame-ancestors': "'none'",
  'frame-src': "'none'",
  'worker-src': "'self'",
};

export function contentSecurityPolicy(
  directives: Readonly<Record<string, string>> = CSP_DIRECTIVES,
): string {
  return Object.entries(directives)
    .map(([name, value]) => `${name} ${value}`)
    .join('; ');
}

/** Headers every response of the app's own page carries. */
export function securityHeaders(): Record<string, string> {
  return {
    'Content-Security-Policy': contentSecurityPolicy(),
    'X-Content-Type-Options': 'nosniff',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Referrer-Policy': 'no-referrer',
  };
}
