// Undo/redo for edits: a cursor over a list of states. Doing something after an undo drops the
// undone branch, as every editor does.
export class History<T> {
  private entries: T[] = [];
  private cursor = -1;

  get current(): T | undefined {
    return this.entries[this.cursor];
  }

  get canUndo(): boolean {
    return this.cursor > 0;
  }

  get canRedo(): boolean {
    return this.cursor < this.entries.length - 1;
  }

  get size(): number {
    return this.entries.length;
  }

  get position(): number {
    return this.cursor;
  }

  push(entry: T): void {
    this.entries = [...this.entries.slice(0, this.cursor + 1), entry];
    this.cursor = this.entries.length - 1;
  }

  undo(): T | undefined {
    if (this.canUndo) this.cursor -= 1;
    return this.current;
  }

  redo(): T | undefined {
    if (this.canRedo) this.cursor += 1;
    return this.current;
  }

  reset(first?: T): void {
    this.entries = first === undefined ? [] : [first];
    this.cursor = this.entries.length - 1;
  }
}
