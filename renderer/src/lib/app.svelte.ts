// App-wide state: the current view, settings, the pack list, and the hand-over of an image from
// one view to another (Generate → Edit). Views keep their own state in their stores so that
// switching views loses nothing.
import { api, errorMessage, type ImageRef, type Settings } from './api.js';

export type View = 'edit' | 'generate' | 'restore' | 'models' | 'queue' | 'settings';

export interface PackEntry {
  id: string;
  name?: string;
  task?: string;
  space?: string;
  origin?: string;
  dir?: string;
  ok: boolean;
  error?: string;
  tuning?: { method?: string; base?: string; metrics?: Record<string, unknown> };
  defaults?: Record<string, unknown>;
  resolution?: { default?: [number, number] };
}

class AppStore {
  view = $state<View>('edit');
  settings = $state<Settings | null>(null);
  packs = $state<PackEntry[]>([]);
  packsError = $state('');
  notice = $state('');
  /** Set by another view to open an image in Edit. */
  handoff = $state<ImageRef | null>(null);

  textPacks = $derived(this.packs.filter((p) => p.ok && p.task === 'text-to-image'));
  restorePacks = $derived(this.packs.filter((p) => p.ok && p.task === 'restoration'));

  async loadPacks(): Promise<void> {
    try {
      this.packs = (await api().invoke('packs:list', {})) as unknown as PackEntry[];
      this.packsError = '';
    } catch (err) {
      this.packsError = errorMessage(err);
    }
  }

  async loadSettings(): Promise<void> {
    try {
      this.settings = await api().invoke('settings:get', {});
    } catch (err) {
      this.notice = errorMessage(err);
    }
  }

  async saveSettings(patch: Partial<Settings>): Promise<void> {
    this.settings = await api().invoke('settings:set', patch);
  }

  sendToEdit(image: ImageRef): void {
    this.handoff = image;
    this.view = 'edit';
  }
}

export const app = new AppStore();
