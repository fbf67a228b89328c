import { defineConfig } from 'vitest/config';

// `npm run test:providers`: the engine on a second execution provider, WebGPU over Mesa's
// llvmpipe (scripts/providers/vulkan-prefix.sh builds the throwaway driver prefix first).
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/providers/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default'],
  },
});
