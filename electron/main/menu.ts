// The native menu as a pure template (tested without Electron): File → Open image / Open folder /
// Open recent / Export…, Edit → Undo / Redo, View → Compare, with their shortcuts. Commands go
// to the renderer as `menu:command` events; the renderer owns what they do.
import path from 'node:path';
import type { MenuItemConstructorOptions } from 'electron';

export type MenuCommand =
  | 'open-image'
  | 'open-folder'
  | 'open-recent'
  | 'export'
  | 'undo'
  | 'redo'
  | 'compare'
  | 'settings';

export function menuTemplate(opts: {
  send: (command: MenuCommand, file?: string) => void;
  recent: string[];
  isMac: boolean;
}): MenuItemConstructorOptions[] {
  const { send, recent, isMac } = opts;
  const item = (
    label: string,
    command: MenuCommand,
    accelerator?: string,
  ): MenuItemConstructorOptions => ({
    label,
    ...(accelerator ? { accelerator } : {}),
    click: () => send(command),
  });
  const recentItems: MenuItemConstructorOptions[] = recent.length
    ? recent.map((file) => ({
        label: path.basename(file),
        toolTip: file,
        click: () => send('open-recent', file),
      }))
    : [{ label: 'No recent files', enabled: false }];
  return [
    ...(isMac ? [{ role: 'appMenu' as const }] : []),
    {
      label: '&File',
      submenu: [
        item('Open Image…', 'open-image', 'CmdOrCtrl+O'),
        item('Open Folder…', 'open-folder', 'CmdOrCtrl+Shift+O'),
        { label: 'Open Recent', submenu: recentItems },
        { type: 'separator' },
        item('Export…', 'export', 'CmdOrCtrl+E'),
        { type: 'separator' },
        item('Settings…', 'settings', 'CmdOrCtrl+,'),
        { type: 'separator' },
        isMac ? { role: 'close' } : { role: 'quit' },
      ],
    },
    {
      label: '&Edit',
      // Undo/redo step through the renderer's edit history; while a text field has focus the
      // renderer passes the command on to the field instead.
      submenu: [
        item('Undo Edit', 'undo', 'CmdOrCtrl+Z'),
        item('Redo Edit', 'redo', isMac ? 'Cmd+Shift+Z' : 'Ctrl+Y'),
        { type: 'separator' },
        { role: 'cut' },
        { role: 'copy' },
        { role: 'paste' },
        { role: 'selectAll' },
      ],
    },
    {
      label: '&View',
      submenu: [
        item('Compare Before/After', 'compare', 'CmdOrCtrl+K'),
        { type: 'separator' },
        { role: 'resetZoom' },
        { role: 'zoomIn' },
        { role: 'zoomOut' },
        { type: 'separator' },
        { role: 'togglefullscreen' },
      ],
    },
    { role: 'windowMenu' },
  ];
}
