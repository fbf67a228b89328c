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

export interface TimeShiftOption {
  window: number;
  cutoff: number;
}

/** `W:CUTOFF` (e.g. `80:300`), or `off`. */
export function timeShiftOption(value: string): TimeShiftOption | null {
  if (value === 'off' || value === 'none') return null;
  const m = /^(\d+):(\d+)$/.exec(value.trim());
  if (!m)
    throw new InvalidArgumentError(
      `--time-shift must be WINDOW:CUTOFF (e.g. 80:300) or "off", got "${value}".`,
    );
  const window = Number(m[1]);
  const cutoff = Number(m[2]);
  if (window > 1000)
    throw new InvalidArgumentError(`--time-shift window must be at most 1000, got ${window}.`);
  return { window, cutoff };
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
