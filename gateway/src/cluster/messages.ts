import type { MetricObjectWithValues, MetricValue } from 'prom-client';

// The IPC between the primary of `serve --workers N` and its workers (node:cluster's channel).

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** What a worker tells its primary. */
export type WorkerMessage =
  | { type: 'sluice:listening'; port: number }
  /** Sent whenever it changes: null when ready, else why not (as /readyz would say). */
  | { type: 'sluice:readiness'; reason: string | null }
  | { type: 'sluice:metrics'; id: number; metrics: MetricsJson };

/** What the primary tells its workers. */
export type PrimaryMessage = { type: 'sluice:reload' } | { type: 'sluice:drain' } | { type: 'sluice:metrics'; id: number };

/** Messages from node or prom-client share the channel: only ours have a type starting with "sluice:". */
export function isOurs<T extends { type: string }>(message: unknown): message is T {
  const type = (message as { type?: unknown } | null)?.type;
  return typeof type === 'string' && type.startsWith('sluice:');
}
