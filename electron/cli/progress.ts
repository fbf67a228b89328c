// Progress on the terminal: a bar per phase when stderr is a TTY, plain throttled lines when it
// is not (logs, CI, pipes), nothing with --quiet. Progress goes to stderr so stdout stays
// clean for --json output.
import cliProgress from 'cli-progress';
import type { ProgressEvent } from '../engine/progress.js';

export interface ProgressReporter {
  update(event: ProgressEvent): void;
  /** Prints a message without tearing a bar. */
  log(message: string): void;
  stop(): void;
}

class BarReporter implements ProgressReporter {
  private bar: cliProgress.SingleBar | undefined;
  private phase = '';

  update(e: ProgressEvent): void {
    if (!this.bar || e.phase !== this.phase) {
      this.bar?.stop();
      this.phase = e.phase;
      this.bar = new cliProgress.SingleBar(
        {
          format: `${e.phase.padEnd(16)} {bar} {value}/{total} | ETA {eta_formatted} | {detail}`,
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(e.total, e.step, { detail: e.detail ?? '' });
      return;
    }
    this.bar.setTotal(e.total);
    this.bar.update(e.step, { detail: e.detail ?? '' });
  }

  log(message: string): void {
    if (this.bar) process.stderr.write('\n');
    process.stderr.write(`${message}\n`);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

class LineReporter implements ProgressReporter {
  private lastPhase = '';
  private lastAt = 0;

  update(e: ProgressEvent): void {
    const now = Date.now();
    const phaseChanged = e.phase !== this.lastPhase;
    // One line per phase change, per finished phase, and at most one a second in between.
    if (!phaseChanged && e.step !== e.total && now - this.lastAt < 1000) return;
    this.lastPhase = e.phase;
    this.lastAt = now;
    const detail = e.detail ? ` ${e.detail}` : '';
    process.stderr.write(`${e.phase} ${e.step}/${e.total}${detail}\n`);
  }

  log(message: string): void {
    process.stderr.write(`${message}\n`);
  }

  stop(): void {}
}

class QuietReporter implements ProgressReporter {
  update(): void {}
  log(): void {}
  stop(): void {}
}

export function createReporter(options: { quiet?: boolean | undefined }): ProgressReporter {
  if (options.quiet) return new QuietReporter();
  return process.stderr.isTTY ? new BarReporter() : new LineReporter();
}
