import { defineConfig } from 'vitest/config';

// The browser tests: one Chromium, one engine host, flows in order (they share the CPU).
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: process.env.E2E_ONLY
      ? [process.env.E2E_ONLY]
      : ['test/e2e/*.e2e.ts', 'test/electron/*.e2e.ts'],
    globalSetup: ['test/e2e/setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['default'],
  },
});
