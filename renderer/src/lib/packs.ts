// Words for a pack's tuning provenance, e.g. "tuned with B²-DiffuRL from shapes-base,
// +4.2 points alignment".
const METHOD_NAMES: Readonly<Record<string, string>> = {
  'b2-diffurl': 'B²-DiffuRL',
  b2diffurl: 'B²-DiffuRL',
};

export function tuningSummary(
  tuning: { method?: string; base?: string; metrics?: Record<string, unknown> } | undefined,
): string {
  if (!tuning?.method) return '';
  const method = METHOD_NAMES[tuning.method.toLowerCase()] ?? tuning.method;
  let text = `tuned with ${method}${tuning.base ? ` from ${tuning.base}` : ''}`;
  const gain = alignmentGain(tuning.metrics ?? {});
  if (gain !== undefined) text += `, ${gain >= 0 ? '+' : ''}${gain.toFixed(1)} points alignment`;
  return text;
}

/** The alignment gain in points: an explicit delta, or tuned minus base (fractions as %). */
export function alignmentGain(metrics: Record<string, unknown>): number | undefined {
  const num = (k: string) => (typeof metrics[k] === 'number' ? (metrics[k] as number) : undefined);
  const points = (x: number) => (Math.abs(x) <= 1 ? x * 100 : x);
  for (const key of Object.keys(metrics)) {
    if (/alignment.*(gain|delta|points)|(gain|delta).*alignment/i.test(key)) {
      const v = num(key);
      if (v !== undefined) return /points/i.test(key) ? v : points(v);
    }
  }
  const base = Object.keys(metrics).find((k) => /alignment.*base|base.*alignment/i.test(k));
  const tuned = Object.keys(metrics).find((k) => /alignment.*tuned|tuned.*alignment/i.test(k));
  const b = base ? num(base) : undefined;
  const t = tuned ? num(tuned) : undefined;
  if (b !== undefined && t !== undefined) return points(t) - points(b);
  return undefined;
}

/** The scalar results of a pack's eval.json as `dotted.key → value` rows (training logs left out). */
export function evalSummary(evaluation: unknown, limit = 40): [string, string][] {
  const rows: [string, string][] = [];
  const walk = (value: unknown, key: string, depth: number) => {
    if (rows.length >= limit) return;
    if (typeof value === 'number')
      rows.push([key, Number.isInteger(value) ? String(value) : value.toPrecision(4)]);
    else if (typeof value === 'string' || typeof value === 'boolean')
      rows.push([key, String(value)]);
    else if (value && typeof value === 'object' && !Array.isArray(value) && depth < 3) {
      for (const [k, v] of Object.entries(value)) walk(v, key ? `${key}.${k}` : k, depth + 1);
    }
  };
  if (evaluation && typeof evaluation === 'object') {
    const { metrics, ...rest } = evaluation as Record<string, unknown>;
    walk(metrics ?? rest, '', 0);
  }
  return rows;
}

export interface NetworkRow {
  network: string;
  precision: string;
  /** "sample float16, timestep int64 → out_sample float16". */
  io: string;
}

/** The Models view's networks table, from packs:info's `networks` (anything malformed skipped). */
export function networkRows(networks: unknown): NetworkRow[] {
  if (!Array.isArray(networks)) return [];
  const values = (list: unknown): string =>
    Array.isArray(list)
      ? list
          .filter(
            (v): v is { name: string; type: string } =>
              !!v &&
              typeof (v as { name?: unknown }).name === 'string' &&
              typeof (v as { type?: unknown }).type === 'string',
          )
          .map((v) => `${v.name} ${v.type}`)
          .join(', ')
      : '';
  return networks.flatMap((n: unknown) => {
    if (!n || typeof n !== 'object') return [];
    const { network, precision, inputs, outputs } = n as Record<string, unknown>;
    if (typeof network !== 'string' || typeof precision !== 'string') return [];
    return [{ network, precision, io: `${values(inputs)} → ${values(outputs)}` }];
  });
}
