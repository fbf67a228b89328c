// Errors the engine raises on purpose. Each carries a code the CLI and the app map to an exit
// status or a message, and a message that already names the file, field or option at fault,
// so callers print it as one line instead of a stack trace.
export type ErrorCode =
  | 'BAD_INPUT' // an argument or option is out of range or malformed
  | 'BAD_FILE' // an input file is unreadable, corrupt or of the wrong kind
  | 'BAD_PACK' // a model pack fails validation or its files do not match
  | 'TOO_LARGE' // an input exceeds a safety limit (pixels, bytes)
  | 'MISMATCH' // a file belongs to another pack, grid or version
  | 'CANCELLED' // the caller aborted
  | 'RUNTIME'; // the ONNX runtime failed

export class RetraceError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RetraceError';
  }
}

export class CancelledError extends RetraceError {
  constructor(message = 'cancelled') {
    super('CANCELLED', message);
    this.name = 'CancelledError';
  }
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

export function isCancelled(err: unknown): boolean {
  return err instanceof CancelledError || (err instanceof Error && err.name === 'AbortError');
}

/** The message to show a user: ours as is, anything else prefixed so it is not mistaken for one of ours. */
export function describeError(err: unknown): string {
  if (err instanceof RetraceError) return err.message;
  if (err instanceof Error) return `internal error: ${err.message}`;
  return `internal error: ${String(err)}`;
}
