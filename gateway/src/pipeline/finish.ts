import { performance } from 'node:perf_hooks';
import { requestDurationBy, requestsBy } from '../metrics/registry';
import type { RequestContext } from './context';

/**
 * The end of every request, answered or not: metrics, then one access-log line. Failures are always
 * logged; successes are sampled by `log.access_sample`. Never the key or any other secret.
 */
export function finish(ctx: RequestContext): void {
  const seconds = (performance.now() - ctx.startedAt) / 1000;
  const route = ctx.route?.route.name ?? 'none';
  const status = ctx.status ?? 0;
  requestsBy(route, ctx.req.method ?? 'UNKNOWN', String(status)).inc();
  requestDurationBy(route).observe(seconds);

  const { log, config } = ctx.runtime;
  if (!log.isLevelEnabled('info')) return;
  const failed = ctx.error !== undefined || status >= 500;
  if (!failed && config.log.access_sample < 1 && Math.random() >= config.log.access_sample) return;
  log.info(
    {
      request_id: ctx.requestId,
      route: ctx.route?.route.name,
      method: ctx.req.method,
      status: ctx.status,
      code: ctx.error?.code,
      duration_ms: Math.round(seconds * 1_000_000) / 1000,
      upstream: ctx.upstreamTarget,
      consumer_id: ctx.consumer?.id,
      tier: ctx.consumer?.tier,
      client: ctx.clientAddress,
      traceparent: ctx.req.headers.traceparent,
    },
    'request',
  );
}
