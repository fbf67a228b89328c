// The progress/cancel contract every long engine call takes: `{ signal, onProgress }`.
export interface ProgressEvent {
  /** What is happening, in the user's words: "encoding", "inverting", "sampling", "decoding"… */
  phase: string;
  /** Units done within this phase and how many there are (network calls, tiles, files). */
  step: number;
  total: number;
  /** Free-form extra detail, e.g. the file being processed. */
  detail?: string;
  /** A small PNG of the current estimate (the UI's live preview), when the pipeline makes one. */
  preview?: string;
}

export interface RunOptions {
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}
