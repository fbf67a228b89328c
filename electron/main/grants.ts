// What the renderer may touch on disk, decided by main. Grants come only from what the user did
// outside the page's reach: a file or folder chosen in a main-process dialog, a file dropped on
// the window (reported by the preload from its isolated world, see preload/api.ts), a recent
// file chosen in main's menu, and the app's own output folders. A request naming any other path
// is refused before it reaches the engine, so a compromised page can neither read nor overwrite
// files the user never pointed at. Every check compares real paths (symlinks resolved, up to the
// deepest existing ancestor of a file not written yet).
import { statSync } from 'node:fs';
import path from 'node:path';
import type { JobRequest } from '../contract/channels.js';
import { AllowList, isInside, normalisePath } from './protocol.js';

export class Grants {
  /** Where images may be read from (and served by retrace://image). */
  readonly read = new AllowList();
  private readonly writeFolders = new AllowList();
  /** Folders the user chose (dialog or drop): the only ones settings may store. */
  private readonly userFolders = new AllowList();
  private readonly saveTargets = new Set<string>();

  constructor(outputRoots: string[]) {
    for (const root of outputRoots) this.addOutputFolder(root);
  }

  /** A folder the app writes into: readable and writable. */
  addOutputFolder(folder: string): void {
    this.read.addFolder(folder);
    this.writeFolders.addFolder(folder);
  }

  /** A folder the user picked: its images may be read, and outputs may go there. */
  addPickedFolder(folder: string): void {
    this.addOutputFolder(folder);
    this.userFolders.addFolder(folder);
  }

  addPickedFile(file: string): void {
    this.read.addFile(file);
  }

  /**
   * Paths the preload saw dropped on the window (a trusted drop of real files): files become
   * readable, folders become picked folders. Anything that does not exist is ignored. Returns
   * what was granted.
   */
  addDropped(paths: readonly string[]): string[] {
    const granted: string[] = [];
    for (const p of paths) {
      const real = normalisePath(p);
      if (!real) continue;
      const st = statSync(real, { throwIfNoEntry: false });
      if (st?.isDirectory()) this.addPickedFolder(real);
      else if (st?.isFile()) this.addPickedFile(real);
      else continue;
      granted.push(real);
    }
    return granted;
  }

  addSaveTarget(file: string): void {
    const p = normalisePath(file);
    if (p) this.saveTargets.add(p);
  }

  canRead(file: string): boolean {
    return this.read.allows(file);
  }

  canWriteFolder(folder: string): boolean {
    return this.writeFolders.allows(folder);
  }

  /** A folder the user chose in a dialog or dropped (or one inside it). */
  isUserFolder(folder: string): boolean {
    return this.userFolders.allows(folder);
  }

  /** A save target is good for one write. */
  takeSaveTarget(file: string): boolean {
    const p = normalisePath(file);
    if (!p || !this.saveTargets.has(p)) return false;
    this.saveTargets.delete(p);
    return true;
  }

  /** Why a job request may not run (naming the path or field), or undefined when it may. */
  refusal(job: JobRequest): string | undefined {
    const notGranted = (p: string) => `${p} was not opened or chosen in this session`;
    switch (job.kind) {
      case 'generate':
        return undefined;
      case 'invert':
      case 'roundtrip':
      case 'automask':
        return this.canRead(job.params.image) ? undefined : notGranted(job.params.image);
      case 'replay': {
        const { inversion, source, mask } = job.params;
        const bad = [inversion, source, mask].find((p) => p !== undefined && !this.canRead(p));
        return bad === undefined ? undefined : notGranted(bad);
      }
      case 'restore': {
        const bad = job.params.inputs.find((p) => !this.canRead(p));
        if (bad) return notGranted(bad);
        const { outputDir, report } = job.params;
        if (!this.canWriteFolder(outputDir)) return notGranted(outputDir);
        if (report !== undefined) {
          const file = normalisePath(report);
          const folder = normalisePath(outputDir);
          if (!file || !folder || path.extname(file).toLowerCase() !== '.json')
            return `report ${report} must be a .json file inside the output folder`;
          if (!isInside(file, folder) || file === folder)
            return `report ${report} must be a .json file inside the output folder ${outputDir}`;
        }
        return undefined;
      }
    }
  }
}
