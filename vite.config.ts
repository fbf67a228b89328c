// Builds the renderer (Svelte 5) into renderer/dist, loaded by Electron from retrace://app and
// by the e2e bridge over HTTP. Relative asset URLs so both origins work.
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

export default defineConfig({
  root: 'renderer',
  base: './',
  plugins: [svelte()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'chrome120',
    sourcemap: true,
    // No inline <script>/<style> and no data: modules, so the strict CSP holds.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
