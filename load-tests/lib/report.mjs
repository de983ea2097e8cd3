// Markdown output: tables, number formats, and target lines (reported, never asserted).

export function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export const int = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
export const ms = (n) => (Number.isFinite(n) ? n.toFixed(2) : '—');
export const fixed = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '—');
export const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
export const pct = (n) => (Number.isFinite(n) ? `${n >= 0 ? '+' : ''}${n.toFixed(1)} %` : '—');
export const bytes = (n) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${Math.round(n)} B`);

/** One target: what it asks, what we measured, whether it is met (✅/❌; '—' when not measurable). */
export function target(what, measured, met) {
  return { what, measured, met: met === undefined || met === null ? '—' : met ? '✅ met' : '❌ not met' };
}

export const targetsTable = (targets) => table(['target', 'measured', ''], targets.map((t) => [t.what, t.measured, t.met]));
export const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
