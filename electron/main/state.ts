// What the app remembers between runs: settings, recent files and the window's bounds, in one
// JSON file under the user-data folder. Read leniently (a damaged file means defaults, never a
// crash), written atomically (temporary file, then rename).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { settingsSchema, type Settings } from '../contract/channels.js';

export const MAX_RECENT = 10;

const boundsSchema = z.object({
  x: z.number().int().optional(),
  y: z.number().int().optional(),
  width: z.number().int().min(400).max(16384),
  height: z.number().int().min(300).max(16384),
  maximized: z.boolean().optional(),
});

const stateSchema = z.object({
  settings: settingsSchema.catch(settingsSchema.parse({})),
  recent: z.array(z.string()).catch([]),
  bounds: boundsSchema.optional().catch(undefined),
});

export type AppStateData = z.output<typeof stateSchema>;
export type Bounds = z.output<typeof boundsSchema>;

export class AppState {
  private data: AppStateData;

  constructor(private readonly file: string) {
    this.data = AppState.read(file);
  }

  private static read(file: string): AppStateData {
    try {
      const parsed = stateSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
      if (parsed.success) return parsed.data;
    } catch {
      // Missing or unreadable: start from defaults.
    }
    return stateSchema.parse({ recent: [] });
  }

  get settings(): Settings {
    return this.data.settings;
  }

  get recent(): string[] {
    return [...this.data.recent];
  }

  get bounds(): Bounds | undefined {
    return this.data.bounds;
  }

  updateSettings(patch: { [K in keyof Settings]?: Settings[K] | undefined }): Settings {
    const defined = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined));
    this.data.settings = settingsSchema.parse({ ...this.data.settings, ...defined });
    this.save();
    return this.data.settings;
  }

  /** Most recent first, no duplicates, at most MAX_RECENT. */
  addRecent(file: string): string[] {
    const p = path.resolve(file);
    this.data.recent = [p, ...this.data.recent.filter((r) => r !== p)].slice(0, MAX_RECENT);
    this.save();
    return this.recent;
  }

  setBounds(bounds: Bounds): void {
    const parsed = boundsSchema.safeParse(bounds);
    if (!parsed.success) return;
    this.data.bounds = parsed.data;
    this.save();
  }

  private save(): void {
    mkdirSync(path.dirname(this.file), { recursive: true });
    const temp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(temp, JSON.stringify(this.data, null, 2));
    renameSync(temp, this.file);
  }
}
