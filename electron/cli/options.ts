// Parsers for command-line values: each rejects bad input with a message that names the option,
// so commander prints one clear line and exits with the usage status.
import { InvalidArgumentError } from 'commander';

export function intOption(name: string, min: number, max: number) {
  return (value: string): number => {
    if (!/^[+-]?\d+$/.test(value.trim()))
      throw new InvalidArgumentError(`${name} must be a whole number, got "${value}".`);
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${value}.`);
    }
    return n;
  };
}

export function floatOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n))
      throw new InvalidArgumentError(`${name} must be a number, got "${value}".`);
    if (n < min || n > max)
      throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${value}.`);
    return n;
  };
}

export type TimeShiftVariantOption = 'paper' | 'released-code' | 'data-variance';

export interface TimeShiftOption {
  window: number;
  cutoff: number;
  variant: TimeShiftVariantOption;
}

const TIME_SHIFT_VARIANTS: readonly TimeShiftVariantOption[] = [
  'paper',
  'released-code',
  'data-variance',
];

/** `W:CUTOFF[:VARIANT]` (e.g. `80:300`, `40:200:data-variance`), or `off`. */
export function timeShiftOption(value: string): TimeShiftOption | null {
  if (value === 'off' || value === 'none') return null;
  const m = /^(\d+):(\d+)(?::([a-z-]+))?$/.exec(value.trim());
  if (!m)
    throw new InvalidArgumentError(
      `--time-shift must be WINDOW:CUTOFF[:VARIANT] (e.g. 80:300) or "off", got "${value}".`,
    );
  const window = Number(m[1]);
  const cutoff = Number(m[2]);
  const variant = (m[3] ?? 'paper') as TimeShiftVariantOption;
  if (window > 1000)
    throw new InvalidArgumentError(`--time-shift window must be at most 1000, got ${window}.`);
  if (!TIME_SHIFT_VARIANTS.includes(variant))
    throw new InvalidArgumentError(
      `--time-shift variant must be one of ${TIME_SHIFT_VARIANTS.join(', ')}, got "${variant}".`,
    );
  return { window, cutoff, variant };
}

export function choiceOption<T extends string>(name: string, choices: readonly T[]) {
  return (value: string): T => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(
        `${name} must be one of ${choices.join(', ')}, got "${value}".`,
      );
    }
    return value as T;
  };
}
