import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageUrlFor } from '../../../electron/contract/channels.js';
import {
  AllowList,
  registerProtocols,
  resolveRequest,
  respond,
} from '../../../electron/main/protocol.js';

let root: string;
let allowed: string;
let secret: string;
let app: string;
const allow = new AllowList();

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'retrace-protocol-'));
  allowed = path.join(root, 'photos');
  secret = path.join(root, 'secret');
  app = path.join(root, 'app');
  for (const d of [allowed, secret, app, `${allowed}2`]) mkdirSync(d);
  writeFileSync(path.join(allowed, 'a.png'), 'png');
  writeFileSync(path.join(secret, 'b.png'), 'secret');
  writeFileSync(path.join(`${allowed}2`, 'c.png'), 'sibling');
  writeFileSync(path.join(app, 'index.html'), '<html></html>');
  writeFileSync(path.join(root, 'outside.js'), 'x');
  symlinkSync(path.join(secret, 'b.png'), path.join(allowed, 'link.png'));
  allow.addFolder(allowed);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const serve = (file: string) => resolveRequest(imageUrlFor(file), app, allow);

describe('retrace://image allow-list', () => {
  it('serves an image inside an allowed folder', async () => {
    const r = serve(path.join(allowed, 'a.png'));
    expect(r.ok).toBe(true);
    const res = await respond(r);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('png');
  });
  it('refuses a folder never allowed', () => {
    expect(serve(path.join(secret, 'b.png'))).toMatchObject({ ok: false, status: 403 });
  });
  it('normalises .. before the check (traversal out of an allowed folder)', () => {
    const sneaky = `${allowed}/../secret/b.png`;
    expect(serve(sneaky)).toMatchObject({ ok: false, status: 403 });
    expect(serve(`${allowed}/x/../../secret/b.png`)).toMatchObject({ ok: false });
  });
  it('follows symlinks before the check', () => {
    expect(serve(path.join(allowed, 'link.png'))).toMatchObject({ ok: false, status: 403 });
  });
  it('does not treat a sibling with the same prefix as inside', () => {
    expect(serve(path.join(`${allowed}2`, 'c.png'))).toMatchObject({ ok: false, status: 403 });
  });
  it('refuses relative paths, NUL bytes and non-images', () => {
    expect(serve('photos/a.png').ok).toBe(false);
    expect(serve(`${allowed}/a.png\0.png`).ok).toBe(false);
    writeFileSync(path.join(allowed, 'notes.txt'), 'text');
    expect(serve(path.join(allowed, 'notes.txt'))).toMatchObject({ ok: false, status: 403 });
  });
  it('allows single files added one by one', () => {
    const list = new AllowList();
    list.addFile(path.join(secret, 'b.png'));
    expect(list.allows(path.join(secret, 'b.png'))).toBe(true);
    expect(list.allows(path.join(secret, 'other.png'))).toBe(false);
  });
});

describe('retrace://app', () => {
  it('serves the renderer with the CSP header', () => {
    const r = resolveRequest('retrace://app/index.html', app, allow);
    expect(r.ok && r.headers['Content-Security-Policy']).toMatch(/default-src 'none'/);
  });
  it('refuses traversal out of the renderer folder', () => {
    for (const url of [
      'retrace://app/../outside.js',
      'retrace://app/%2e%2e/outside.js',
      'retrace://app/..%2Foutside.js',
      'retrace://app/%2e%2e%2foutside.js',
    ]) {
      const r = resolveRequest(url, app, allow);
      if (r.ok) expect(path.relative(app, r.file).startsWith('..')).toBe(false);
      else expect(r.status).toBeGreaterThanOrEqual(400);
    }
  });
  it('answers 404 for unknown hosts and 403 for other schemes', () => {
    expect(resolveRequest('retrace://elsewhere/x', app, allow)).toMatchObject({ status: 404 });
    expect(resolveRequest('file:///etc/passwd', app, allow)).toMatchObject({ status: 403 });
  });
});

describe('registerProtocols', () => {
  it('refuses file:// outright', async () => {
    const handlers = new Map<string, (r: Request) => Response | Promise<Response>>();
    registerProtocols({ handle: (s, h) => void handlers.set(s, h) }, app, allow);
    const file = handlers.get('file');
    expect(file).toBeDefined();
    const res = await file?.(new Request('file:///etc/passwd'));
    expect(res?.status).toBe(403);
    const img = await handlers.get('retrace')?.(
      new Request(imageUrlFor(path.join(secret, 'b.png'))),
    );
    expect(img?.status).toBe(403);
  });
});
