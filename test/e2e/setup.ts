// Vitest global setup of the browser tests: build once before any test file runs.
import { buildAll } from './build.js';

export default async function setup(): Promise<void> {
  await buildAll();
}
