// Builds what the browser tests need, with Vite's API (no extra tools): the renderer exactly as
// the app ships it, the preload shim, and the engine host entry bundled for `child_process.fork`.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TMP = path.join(ROOT, 'test', '.tmp', 'e2e');
export const RENDERER_DIST = path.join(ROOT, 'renderer', 'dist');
export const SHIM = path.join(TMP, 'shim', 'shim.js');
export const HOST_ENTRY = path.join(TMP, 'host', 'utility.js');

export async function buildAll(): Promise<void> {
  await build({
    configFile: path.join(ROOT, 'vite.config.ts'),
    root: path.join(ROOT, 'renderer'),
    logLevel: 'warn',
  });
  await build({
    configFile: false,
    logLevel: 'warn',
    build: {
      outDir: path.dirname(SHIM),
      emptyOutDir: true,
      target: 'chrome120',
      minify: false,
      lib: {
        entry: path.join(ROOT, 'test', 'e2e', 'shim.ts'),
        formats: ['iife'],
        name: 'retraceShim',
        fileName: () => 'shim.js',
      },
    },
  });
  await build({
    configFile: false,
    logLevel: 'warn',
    build: {
      ssr: path.join(ROOT, 'electron', 'engine', 'host', 'utility.ts'),
      outDir: path.dirname(HOST_ENTRY),
      emptyOutDir: true,
      target: 'node20',
      minify: false,
      rollupOptions: { output: { format: 'esm', entryFileNames: 'utility.js' } },
    },
  });
}
