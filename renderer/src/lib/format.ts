// Small formatters shared by the views: durations, ETAs, errors, file names.
export function formatSeconds(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '—';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function formatEta(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return 'estimating…';
  if (s < 1) return 'almost done';
  return `about ${formatSeconds(s)} left`;
}

export function basename(p: string): string {
  return p.split(/[\\/]/).pop() ?? p;
}

/** Scientific notation for tiny errors, fixed for the rest. */
export function formatError(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '—';
  if (x === 0) return '0';
  return Math.abs(x) < 1e-3 ? x.toExponential(2) : x.toFixed(4);
}

export function percent(step: number, total: number): number {
  return total > 0 ? Math.min(100, Math.max(0, (100 * step) / total)) : 0;
}
