import { request } from 'undici';

/** A series name with its labels sorted by name, so label order in the exposition does not matter. */
export function seriesKey(name: string, labels: Record<string, string> = {}): string {
  const sorted = Object.keys(labels).sort().map((label) => `${label}="${labels[label]}"`);
  return sorted.length > 0 ? `${name}{${sorted.join(',')}}` : name;
}

function normalise(series: string): string {
  const brace = series.indexOf('{');
  if (brace === -1) return series;
  const labels: Record<string, string> = {};
  for (const match of series.slice(brace + 1, -1).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[match[1]] = match[2];
  return seriesKey(series.slice(0, brace), labels);
}

/** A Prometheus text scrape as series → value, keyed by seriesKey(), e.g. `sluice_errors_total{code="forbidden",status="403"}` → 2. */
export async function scrape(adminUrl: string): Promise<Map<string, number>> {
  const res = await request(`${adminUrl}/metrics`);
  const text = await res.body.text();
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    series.set(normalise(line.slice(0, space)), Number(line.slice(space + 1)));
  }
  return series;
}

/** Series whose value changed between two scrapes (new series count from 0), filtered by name prefix. */
export function changed(before: Map<string, number>, after: Map<string, number>, prefix: string): Record<string, number> {
  const deltas: Record<string, number> = {};
  for (const [name, value] of after) {
    if (!name.startsWith(prefix)) continue;
    const delta = value - (before.get(name) ?? 0);
    if (delta !== 0) deltas[name] = delta;
  }
  return deltas;
}
