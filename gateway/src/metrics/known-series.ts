import type { Config } from '../config/schema';
import { catalogue } from '../errors/catalogue';
import { DEFAULT_METHODS } from '../pipeline/cors';
import { servedMethods } from '../routing/route-table';
import {
  configReloads,
  errors,
  KEY_CACHE_RESULTS,
  keyCacheLookups,
  NO_ROUTE,
  quotaRefusals,
  RATE_LIMIT_OUTCOMES,
  rateLimitDecisions,
  concurrencyRefusals,
  REDIS_OPERATIONS,
  redisDuration,
  redisErrors,
  RELOAD_RESULTS,
  requestDuration,
  requests,
  UPSTREAM_ERROR_CODES,
  upstreamDuration,
  upstreamErrors,
} from './registry';

// Counters and histograms are exported at 0 for every label value known before the first event
// (from the config and the code), so Prometheus sees 0 before the first event and increase(),
// rate() and alerts such as SluiceConfigReloadFailed catch that event. Run at start and on reload,
// never per request. Bounded: route, upstream and tier names, and fixed lists; never keys or paths.
// Series of routes, upstreams or tiers a reload removed stay (at their last value) until restart.

/** The gateway's own 5xx answers: sluice_requests_total starts at 0 for these (the error-ratio alert). */
const SERVER_ERROR_STATUSES = [...new Set(Object.values(catalogue).map((entry) => entry.status))].filter((status) => status >= 500);

/** Label sets already exported, so a reload never resets a histogram that has observations. */
const zeroed = new Set<string>();

function once(metric: string, labels: Record<string, string>, zero: () => void): void {
  const id = `${metric}\u0000${JSON.stringify(labels)}`;
  if (zeroed.has(id)) return;
  zeroed.add(id);
  zero();
}

/** The methods a route answers, as the route table serves them; an any-method route: the common ones. */
const routeMethods = (methods: readonly string[] | undefined): Set<string> => servedMethods(methods ?? DEFAULT_METHODS);

export function zeroKnownSeries(config: Config): void {
  // inc(…, 0) never lowers a counter, so counters need no bookkeeping; histograms' zero() resets.
  for (const [code, { status }] of Object.entries(catalogue)) errors.inc({ code, status: String(status) }, 0);
  for (const result of RELOAD_RESULTS) configReloads.inc({ result }, 0);
  for (const result of KEY_CACHE_RESULTS) keyCacheLookups.inc({ result }, 0);

  const routes = [...config.routes.map((r) => ({ name: r.name, methods: routeMethods(r.match.methods) })), { name: NO_ROUTE, methods: routeMethods(undefined) }];
  for (const route of routes) {
    once('request_duration', { route: route.name }, () => requestDuration.zero({ route: route.name }));
    for (const method of route.methods) {
      for (const status of SERVER_ERROR_STATUSES) requests.inc({ route: route.name, method, status: String(status) }, 0);
    }
  }
  for (const upstream of Object.keys(config.upstreams)) {
    once('upstream_duration', { upstream }, () => upstreamDuration.zero({ upstream }));
    for (const code of UPSTREAM_ERROR_CODES) upstreamErrors.inc({ upstream, code }, 0);
  }
  for (const [tier, settings] of Object.entries(config.tiers)) {
    for (const outcome of RATE_LIMIT_OUTCOMES) rateLimitDecisions.inc({ tier, outcome }, 0);
    if (settings.quota) quotaRefusals.inc({ tier, period: settings.quota.per }, 0);
    concurrencyRefusals.inc({ tier }, 0); // every tier: a reload may give it a concurrency limit
  }
  if (config.store.redis) {
    for (const operation of REDIS_OPERATIONS) {
      once('redis_duration', { operation }, () => redisDuration.zero({ operation }));
      redisErrors.inc({ operation }, 0);
    }
  }
}
