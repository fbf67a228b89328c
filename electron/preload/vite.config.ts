// Bundles the preload (and the contract and zod it uses) into one CommonJS file: a sandboxed
// preload cannot load modules, only `electron` itself.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = path.dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  build: {
    outDir: path.resolve(here, '../../dist/electron/preload'),
    emptyOutDir: true,
    target: 'chrome120',
    minify: false,
    sourcemap: false,
    lib: {
      entry: path.join(here, 'index.ts'),
      formats: ['cjs'],
      fileName: () => 'index.cjs',
    },
    rollupOptions: { external: ['electron'] },
  },
});
