// What the renderer may touch on disk, decided by main: files and folders the user picked in a
// dialog (or dropped), the app's output folders, and save targets the user chose. A request
// naming any other path is refused before it reaches the engine, so a compromised page can
// neither read nor overwrite files the user never pointed at.
import path from 'node:path';
import type { JobRequest } from '../contract/channels.js';
import { AllowList, normalisePath } from './protocol.js';

export class Grants {
  /** Where images may be read from (and served by retrace://image). */
  readonly read = new AllowList();
  private readonly writeFolders = new AllowList();
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
  }

  addPickedFile(file: string): void {
    this.read.addFile(file);
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

  /** A save target is good for one write. */
  takeSaveTarget(file: string): boolean {
    const p = normalisePath(file);
    if (!p || !this.saveTargets.has(p)) return false;
    this.saveTargets.delete(p);
    return true;
  }

  /** The first path of a job request the user never granted, or undefined when all are fine. */
  refusedPath(job: JobRequest): string | undefined {
    switch (job.kind) {
      case 'generate':
        return undefined;
      case 'invert':
      case 'roundtrip':
        return this.canRead(job.params.image) ? undefined : job.params.image;
      case 'replay':
        return this.canRead(job.params.inversion) ? undefined : job.params.inversion;
      case 'restore': {
        const bad = job.params.inputs.find((p) => !this.canRead(p));
        if (bad) return bad;
        if (!this.canWriteFolder(job.params.outputDir)) return job.params.outputDir;
        if (job.params.report && !this.canWriteFolder(path.dirname(job.params.report)))
          return job.params.report;
        return undefined;
      }
    }
  }
}
