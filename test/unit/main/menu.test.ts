import type { MenuItemConstructorOptions } from 'electron';
import { describe, expect, it, vi } from 'vitest';
import { menuTemplate } from '../../../electron/main/menu.js';

function flatten(items: MenuItemConstructorOptions[]): MenuItemConstructorOptions[] {
  return items.flatMap((i) => [i, ...(Array.isArray(i.submenu) ? flatten(i.submenu) : [])]);
}

describe('menu', () => {
  it('has File/Edit/View commands with shortcuts that reach the renderer', () => {
    const send = vi.fn();
    const items = flatten(menuTemplate({ send, recent: ['/photos/cat.png'], isMac: false }));
    const byLabel = (l: string) => items.find((i) => i.label === l);
    const expected: [string, string, string | undefined][] = [
      ['Open Image…', 'open-image', 'CmdOrCtrl+O'],
      ['Open Folder…', 'open-folder', 'CmdOrCtrl+Shift+O'],
      ['Export…', 'export', 'CmdOrCtrl+E'],
      ['Undo Edit', 'undo', 'CmdOrCtrl+Z'],
      ['Redo Edit', 'redo', 'Ctrl+Y'],
      ['Compare Before/After', 'compare', 'CmdOrCtrl+K'],
    ];
    for (const [label, command, accelerator] of expected) {
      const item = byLabel(label);
      expect(item?.accelerator).toBe(accelerator);
      (item?.click as () => void)();
      expect(send).toHaveBeenLastCalledWith(command);
    }
    (byLabel('cat.png')?.click as () => void)();
    expect(send).toHaveBeenLastCalledWith('open-recent', '/photos/cat.png');
  });
  it('shows a disabled placeholder without recent files and the app menu on macOS', () => {
    const mac = menuTemplate({ send: vi.fn(), recent: [], isMac: true });
    expect(mac[0]).toEqual({ role: 'appMenu' });
    expect(flatten(mac).find((i) => i.label === 'No recent files')?.enabled).toBe(false);
    expect(flatten(mac).find((i) => i.label === 'Redo Edit')?.accelerator).toBe('Cmd+Shift+Z');
  });
});
