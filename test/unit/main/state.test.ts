import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AppState, MAX_RECENT } from '../../../electron/main/state.js';

const root = mkdtempSync(path.join(tmpdir(), 'retrace-state-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('app state', () => {
  it('starts from defaults when the file is missing or damaged', () => {
    const file = path.join(root, 'damaged.json');
    writeFileSync(file, '{ not json');
    const s = new AppState(file);
    expect(s.settings).toEqual({
      provider: 'auto',
      threads: 0,
      outputFormat: 'png',
      theme: 'system',
    });
    expect(s.recent).toEqual([]);
  });
  it('keeps recent files newest first, without duplicates, capped', () => {
    const file = path.join(root, 'recent.json');
    const s = new AppState(file);
    for (let i = 0; i < MAX_RECENT + 3; i++) s.addRecent(`/p/${i}.png`);
    s.addRecent('/p/5.png');
    expect(s.recent[0]).toBe(path.resolve('/p/5.png'));
    expect(s.recent).toHaveLength(MAX_RECENT);
    expect(new Set(s.recent).size).toBe(MAX_RECENT);
    expect(new AppState(file).recent).toEqual(s.recent);
  });
  it('saves settings and bounds atomically and reads them back', () => {
    const file = path.join(root, 'state.json');
    const s = new AppState(file);
    s.updateSettings({ provider: 'cpu', threads: 4, outputFormat: 'webp', theme: undefined });
    s.setBounds({ x: 5, y: 6, width: 1100, height: 800, maximized: false });
    s.setBounds({ width: 10, height: 10 });
    const again = new AppState(file);
    expect(again.settings).toMatchObject({
      provider: 'cpu',
      threads: 4,
      outputFormat: 'webp',
      theme: 'system',
    });
    expect(again.bounds).toEqual({ x: 5, y: 6, width: 1100, height: 800, maximized: false });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toHaveProperty('settings');
    expect(readdirSync(root).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
  it('refuses invalid settings with the field named', () => {
    const s = new AppState(path.join(root, 'bad.json'));
    expect(() => s.updateSettings({ threads: -1 })).toThrow(/threads/);
  });
});
