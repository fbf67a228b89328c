// The retrace:// protocol: `retrace://app/…` serves the built renderer, `retrace://image/<path>`
// serves an image only when its normalised real path lies inside the allow-list (folders the
// user opened, output folders, the app's cache). file:// is refused outright, so a compromised
// page cannot read the disk by URL. The path checks are pure and tested apart from Electron.
import { lstatSync, readlinkSync, realpathSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { filePathFromImageUrl } from '../contract/channels.js';
import { securityHeaders } from './csp.js';

const IMAGE_TYPES: Readonly<Record<string, string>> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.avif': 'image/avif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
};

const APP_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
};

/**
 * The real path `p` names: `..`, `.` and duplicate separators resolved, and every symlink on the
 * way resolved too — for a file that does not exist yet, those of its deepest existing ancestor
 * (so `granted/link-to-etc/new.json` is judged as `/etc/new.json`, not as a path inside
 * `granted`). Relative paths and NUL bytes give undefined.
 */
export function normalisePath(p: string): string | undefined {
  if (p.includes('\0') || !path.isAbsolute(p)) return undefined;
  let resolved = path.resolve(p);
  const rest: string[] = [];
  let at = resolved;
  for (let links = 0; ;) {
    try {
      return path.join(realpathSync.native(at), ...rest);
    } catch {
      // A dangling link is followed by hand: writing through it would land at its target.
      const target = danglingLinkTarget(at);
      if (target !== undefined) {
        if (links++ >= 40) return undefined; // a loop of links: refuse rather than guess
        at = path.resolve(path.dirname(at), target);
        resolved = path.join(at, ...rest);
        continue;
      }
      const parent = path.dirname(at);
      // Nothing exists up to the root (or the root itself is unreadable): keep it lexical.
      if (parent === at) return resolved;
      rest.unshift(path.basename(at));
      at = parent;
    }
  }
}

function danglingLinkTarget(p: string): string | undefined {
  try {
    return lstatSync(p).isSymbolicLink() ? readlinkSync(p) : undefined;
  } catch {
    return undefined;
  }
}

export function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Folders (and single files) the renderer may load images from. */
export class AllowList {
  private readonly folders = new Set<string>();
  private readonly files = new Set<string>();

  addFolder(folder: string): void {
    const p = normalisePath(folder);
    if (p) this.folders.add(p);
  }

  addFile(file: string): void {
    const p = normalisePath(file);
    if (p) this.files.add(p);
  }

  /** The normalised path when `file` may be served, else undefined. */
  check(file: string): string | undefined {
    const p = normalisePath(file);
    if (!p) return undefined;
    if (this.files.has(p)) return p;
    for (const folder of this.folders) if (isInside(p, folder)) return p;
    return undefined;
  }

  allows(file: string): boolean {
    return this.check(file) !== undefined;
  }
}

export type Resolution =
  | { ok: true; file: string; type: string; headers: Record<string, string> }
  | { ok: false; status: number; reason: string };

/** Decides what a retrace:// URL serves; pure apart from resolving symlinks. */
export function resolveRequest(url: string, appRoot: string, allow: AllowList): Resolution {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, status: 400, reason: 'malformed URL' };
  }
  if (u.protocol !== 'retrace:') return { ok: false, status: 403, reason: `${u.protocol} refused` };
  if (u.host === 'app') {
    let rel: string;
    try {
      rel = decodeURIComponent(u.pathname);
    } catch {
      return { ok: false, status: 400, reason: 'malformed path' };
    }
    if (rel === '/' || rel === '') rel = '/index.html';
    const root = path.resolve(appRoot);
    const file = path.resolve(root, `.${path.posix.normalize(rel)}`);
    if (!isInside(file, root) || file === root || rel.includes('\0'))
      return { ok: false, status: 403, reason: 'outside the app' };
    const type = APP_TYPES[path.extname(file).toLowerCase()];
    if (!type) return { ok: false, status: 403, reason: 'not an app asset' };
    return { ok: true, file, type, headers: { 'Content-Type': type, ...securityHeaders() } };
  }
  if (u.host === 'image') {
    const requested = filePathFromImageUrl(url);
    if (!requested) return { ok: false, status: 400, reason: 'malformed image path' };
    const type = IMAGE_TYPES[path.extname(requested).toLowerCase()];
    if (!type) return { ok: false, status: 403, reason: 'not an image' };
    const file = allow.check(requested);
    if (!file) return { ok: false, status: 403, reason: 'not in an allowed folder' };
    return {
      ok: true,
      file,
      type,
      // The app's page may read these pixels back from a canvas (the Edit view's automatic mask,
      // loaded for touching up); no other origin may.
      headers: {
        'Content-Type': type,
        'X-Content-Type-Options': 'nosniff',
        'Access-Control-Allow-Origin': 'retrace://app',
      },
    };
  }
  return { ok: false, status: 404, reason: 'unknown host' };
}

/** Turns a resolution into a Response (the handler Electron's protocol.handle calls). */
export async function respond(resolution: Resolution): Promise<Response> {
  if (!resolution.ok) return new Response(resolution.reason, { status: resolution.status });
  try {
    const body = await readFile(resolution.file);
    return new Response(body, { status: 200, headers: resolution.headers });
  } catch {
    return new Response('not found', { status: 404 });
  }
}

/** Privileges the scheme needs (registered before the app is ready). */
export const SCHEME_PRIVILEGES = {
  scheme: 'retrace',
  privileges: {
    standard: true,
    secure: true,
    supportFetchAPI: true,
    stream: true,
    corsEnabled: true,
  },
} as const;

interface ProtocolLike {
  handle(scheme: string, handler: (request: Request) => Response | Promise<Response>): void;
}

export function registerProtocols(protocol: ProtocolLike, appRoot: string, allow: AllowList): void {
  protocol.handle('retrace', (request) => respond(resolveRequest(request.url, appRoot, allow)));
  // No page of ours ever needs file://; refusing it closes the obvious way to read the disk.
  protocol.handle('file', () => new Response('file:// is not served', { status: 403 }));
}
