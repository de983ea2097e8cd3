import { performance } from 'node:perf_hooks';
import { NO_ROUTE, requestDurationBy, requestsBy } from '../metrics/registry';
import type { AccessEntry } from '../log';
import type { Runtime } from '../runtime';
import type { RequestContext } from './context';

/** What one request came to, for its metrics and its access-log line. */
export interface Outcome extends AccessEntry {
  /** performance.now() when it arrived */
  startedAt: number;
}

/** The end of every request, answered or not. Never the key or any other secret. */
export function finish(ctx: RequestContext): void {
  record(ctx.runtime, {
    requestId: ctx.requestId,
    startedAt: ctx.startedAt,
    status: ctx.status,
    code: ctx.error?.code,
    route: ctx.route?.route.name,
    method: ctx.req.method,
    upstream: ctx.upstreamTarget,
    consumerId: ctx.consumer?.id,
    tier: (ctx.consumer ?? ctx.anonymous)?.tier,
    client: ctx.clientAddress,
    traceparent: ctx.req.headers.traceparent,
  });
}

/**
 * Metrics, then one access-log line. Failures are always logged; successes are sampled by
 * `log.access_sample`.
 */
export function record(runtime: Runtime, outcome: Outcome): void {
  const seconds = (performance.now() - outcome.startedAt) / 1000;
  const route = outcome.route ?? NO_ROUTE;
  const status = outcome.status ?? 0;
  requestsBy(route, outcome.method ?? 'UNKNOWN', String(status)).inc();
  requestDurationBy(route).observe(seconds);

  const { accessLog: log, config } = runtime;
  if (!log.enabled) return;
  const failed = outcome.code !== undefined || status >= 500;
  if (!failed && config.log.access_sample < 1 && Math.random() >= config.log.access_sample) return;
  log.request(outcome, Math.round(seconds * 1_000_000) / 1000);
}
