import fs from 'node:fs';
import path from 'node:path';

/**
 * Each hardening case (faults, fuzzing, leaks, secrets) records what it measured as one row; after the
 * run `load-tests/reliability-report.mjs` turns every row into load-tests/RELIABILITY.md. Rows are
 * written whether the case passed or not, so the table shows failures too.
 */
export interface ReliabilityRow {
  suite: 'faults' | 'fuzzing' | 'leaks' | 'secrets';
  /** Short, stable name, e.g. "Redis SIGSTOP 5 s" (also the file name). */
  case: string;
  /** Requests (or connections, for leak cases) sent during the case. */
  sent: number;
  /** Answers by HTTP status ("200": 812, "closed": 3 for a connection closed without an answer). */
  statuses: Record<string, number>;
  /** Envelope codes seen in error answers. */
  codes: Record<string, number>;
  /** p99 latency of requests started while the fault was in place, ms. */
  p99FaultMs?: number;
  /** Worst excess over the limit in any rolling window: while Redis was reachable (must be 0), and in windows touching the fault. */
  overLimit?: { reachable: number; fault: number };
  /** Gateway processes that exited when nobody asked them to. */
  crashes: number;
  /** Other figures worth a column of their own, e.g. { "RSS growth MB": 12 }. */
  figures?: Record<string, string | number>;
  /** Each pass/fail criterion of the case. */
  checks: Array<{ name: string; pass: boolean; detail?: string }>;
  durationMs: number;
  seed?: number;
}

export const RESULTS_DIR = path.resolve(__dirname, '../../../load-tests/reliability/results');

export function recordRow(row: ReliabilityRow): void {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = `${row.suite}--${row.case.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}.json`;
  fs.writeFileSync(path.join(RESULTS_DIR, file), JSON.stringify({ ...row, recordedAt: new Date().toISOString() }, null, 2));
}

/** The checks that failed, as one readable message (empty when all passed). */
export function failedChecks(row: ReliabilityRow): string {
  return row.checks
    .filter((c) => !c.pass)
    .map((c) => `${c.name}${c.detail ? `: ${c.detail}` : ''}`)
    .join('\n');
}

export function tally(into: Record<string, number>, key: string | number, by = 1): void {
  into[key] = (into[key] ?? 0) + by;
}

/** Nearest-rank percentile of `values` (ms); NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
