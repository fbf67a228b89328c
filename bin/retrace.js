#!/usr/bin/env node
// The `retrace` command: runs the compiled CLI (built by `npm install` through `prepare`).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const entry = fileURLToPath(new URL('../dist/electron/cli/main.js', import.meta.url));
if (!existsSync(entry)) {
  process.stderr.write(
    'retrace: the CLI is not built yet; run `npm run build` in the Retrace folder.\n',
  );
  process.exit(2);
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv.slice(2));
