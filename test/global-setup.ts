// Runs once before the test files: tests that start the compiled engine in a child process (the
// CLI, the exactness stress workers) need `dist/` built from the current sources. Building here,
// once, keeps two test files from running the compiler over the same folder at the same time.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(file));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(file).mtimeMs);
  }
  return newest;
}

export default function setup(): void {
  const root = path.resolve('.');
  const entry = path.join(root, 'dist/electron/cli/main.js');
  if (existsSync(entry) && statSync(entry).mtimeMs >= newestSource(path.join(root, 'electron')))
    return;
  const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build failed: ${r.stdout}${r.stderr}`);
}
