import { performance } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { HotHistogram, hotCounter } from './hot';
import { logLinesDropped } from '../log-output';

// Every metric name and label is declared here, and only here (the README's metrics table lists
// them; the Grafana dashboard and the alert rules use exactly these names — a test checks both).
// Labels stay low-cardinality: route, tier and upstream names from the config, never keys or paths.
// With `serve --workers N` the primary adds up its workers' registries (cluster/metrics.ts): counters
// and histograms sum (prom-client's default); each gauge below says how it aggregates.

export const registry = new Registry();
// prom-client's standard process and Node.js metrics, under their usual names (process_*, nodejs_*).
collectDefaultMetrics({ register: registry });

// From 0.25 ms to 10 s: a gateway's own overhead is sub-millisecond, upstreams take seconds.
const LATENCY_BUCKETS = [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

// ---- requests -------------------------------------------------------------------------------

// The request path's counters and histograms are hot (hot.ts): counted without prom-client's per-call label work.
const requestsHot = hotCounter(['route', 'method', 'status']);
export const requests = new Counter({
  name: 'sluice_requests_total',
  help: 'Requests answered on the public listener, by route ("none" before a route matched), method and status.',
  labelNames: ['route', 'method', 'status'] as const,
  registers: [registry],
  collect() {
    requestsHot.flush(this);
  },
});

export const errors = new Counter({
  name: 'sluice_errors_total',
  help: 'Error envelopes sent, by envelope code and status; every envelope counts exactly once.',
  labelNames: ['code', 'status'] as const,
  registers: [registry],
});

export const requestDuration = new HotHistogram({
  name: 'sluice_request_duration_seconds',
  help: 'Time from request to the end of the answer, by route.',
  labelNames: ['route'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const inFlight = new Gauge({
  name: 'sluice_in_flight_requests',
  help: 'Requests being handled by this replica now.',
  // With workers (serve --workers): the replica's requests are all its workers' requests.
  aggregator: 'sum',
  registers: [registry],
});

// ---- upstreams ------------------------------------------------------------------------------

export const upstreamDuration = new HotHistogram({
  name: 'sluice_upstream_duration_seconds',
  help: 'Time until the upstream answered with headers, by upstream (each attempt).',
  labelNames: ['upstream'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const upstreamErrors = new Counter({
  name: 'sluice_upstream_errors_total',
  help: 'Failed upstream attempts at the transport level, by upstream and envelope code (bad_gateway, gateway_timeout).',
  labelNames: ['upstream', 'code'] as const,
  registers: [registry],
});

export interface BreakerReading {
  upstream: string;
  target: string;
  state: 'closed' | 'open' | 'half_open';
}
const breakerSources = new Set<() => BreakerReading[]>();

/**
 * A running gateway's breakers, read at scrape time (its current runtime's upstreams). Returns the
 * function that removes the source again, at shutdown.
 */
export function addBreakerSource(source: () => BreakerReading[]): () => void {
  breakerSources.add(source);
  return () => breakerSources.delete(source);
}

const BREAKER_VALUES = { closed: 0, open: 1, half_open: 2 } as const;

export const upstreamBreakerState = new Gauge({
  name: 'sluice_upstream_breaker_state',
  help: 'Breaker of each upstream target: 0 closed (healthy), 1 open (ejected), 2 half-open (one trial).',
  labelNames: ['upstream', 'target'] as const,
  // Each worker has its own breakers: the replica shows the worst state any of them is in.
  aggregator: 'max',
  registers: [registry],
  // Read at scrape time, so targets removed by a reload disappear with them.
  collect() {
    this.reset();
    for (const source of breakerSources) for (const { upstream, target, state } of source()) this.set({ upstream, target }, BREAKER_VALUES[state]);
  },
});

// ---- rate limiting and keys -----------------------------------------------------------------

const rateLimitDecisionsHot = hotCounter(['tier', 'outcome']);
export const rateLimitDecisions = new Counter({
  name: 'sluice_ratelimit_decisions_total',
  help: 'Rate-limit decisions, by tier and outcome (allowed | limited | shadow_limited: admitted, but a shadow window or quota would have refused it).',
  labelNames: ['tier', 'outcome'] as const,
  registers: [registry],
  collect() {
    rateLimitDecisionsHot.flush(this);
  },
});

export const quotaRefusals = new Counter({
  name: 'sluice_ratelimit_quota_refusals_total',
  help: 'Requests refused because the calendar quota of their key is used up, by tier and period (day | week | month).',
  labelNames: ['tier', 'period'] as const,
  registers: [registry],
});

export const concurrencyRefusals = new Counter({
  name: 'sluice_ratelimit_concurrency_refusals_total',
  help: 'Requests refused because their key (or anonymous client) had as many requests in flight as its tier allows, by tier.',
  labelNames: ['tier'] as const,
  registers: [registry],
});

export const rateLimitFallbackActive = new Gauge({
  name: 'sluice_ratelimit_fallback_active',
  help: '1 while this replica limits without Redis (failure policy in force), else 0.',
  // 1 if any worker limits without Redis.
  aggregator: 'max',
  registers: [registry],
});

export const rateLimitFallbackEngaged = new Counter({
  name: 'sluice_ratelimit_fallback_engaged_total',
  help: 'Times this replica switched to its failure policy after consecutive Redis failures.',
  registers: [registry],
});

export const failedKeyBlocks = new Counter({
  name: 'sluice_failed_key_blocks_total',
  help: 'Requests refused with too_many_failed_attempts (client address over the failed-key limit).',
  registers: [registry],
});

const keyCacheLookupsHot = hotCounter(['result']);
export const keyCacheLookups = new Counter({
  name: 'sluice_key_cache_lookups_total',
  help: 'Key lookups by result: hit (cached), miss (asked the store), stale (expired entry served while the store was down).',
  labelNames: ['result'] as const,
  registers: [registry],
  collect() {
    keyCacheLookupsHot.flush(this);
  },
});

export const keysUnknownTier = new Counter({
  name: 'sluice_keys_unknown_tier_total',
  help: 'Requests with a key whose tier is no longer in the config (answered 403).',
  registers: [registry],
});

export const keyEventsSubscribed = new Gauge({
  name: 'sluice_key_events_subscribed',
  help: '1 while this replica hears key changes (revoke, rotate, tier) from Redis pub/sub, else 0.',
  // 1 only while every worker hears key changes (the primary leaves this one out: it does not listen).
  aggregator: 'min',
  registers: [registry],
});

// ---- Redis and config -----------------------------------------------------------------------

export const redisDuration = new HotHistogram({
  name: 'sluice_redis_duration_seconds',
  help: 'Redis round trips by operation (ratelimit, key_lookup, key_read, marker, ...).',
  labelNames: ['operation'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const redisErrors = new Counter({
  name: 'sluice_redis_errors_total',
  help: 'Failed Redis round trips (timeouts, disconnects, errors) by operation.',
  labelNames: ['operation'] as const,
  registers: [registry],
});

export const configReloads = new Counter({
  name: 'sluice_config_reloads_total',
  help: 'Config reloads (SIGHUP or file change), by result (ok | failed).',
  labelNames: ['result'] as const,
  // With workers, the primary counts every reload and each worker the ones it applied: the primary's count.
  aggregator: 'max',
  registers: [registry],
});

let logLinesDroppedSeen = 0;
export const logLinesDroppedTotal = new Counter({
  name: 'sluice_log_lines_dropped_total',
  help: 'Log lines dropped because the log reader (stdout) did not keep up and 16 MiB were already waiting.',
  registers: [registry],
  collect() {
    const now = logLinesDropped();
    this.inc(now - logLinesDroppedSeen);
    logLinesDroppedSeen = now;
  },
});

/**
 * A metric's child for one set of label values, looked up once: prom-client hashes the label object
 * on every call otherwise, which is measurable on the request path. Values in labelNames order.
 */
export function children<C>(metric: { labels(...values: string[]): C }): (...values: string[]) => C {
  const made = new Map<string, C>();
  return (...values) => {
    const key = values.join('\u0000');
    let child = made.get(key);
    if (child === undefined) made.set(key, (child = metric.labels(...values)));
    return child;
  };
}

export const requestsBy = requestsHot.by; // (route, method, status)
export const requestDurationBy = (route: string) => requestDuration.labels(route);
export const upstreamDurationBy = (upstream: string) => upstreamDuration.labels(upstream);
export const rateLimitDecisionsBy = rateLimitDecisionsHot.by; // (tier, outcome)
export const quotaRefusalsBy = children(quotaRefusals); // (tier, period)
export const concurrencyRefusalsBy = children(concurrencyRefusals); // (tier)
export const errorsBy = children(errors); // (code, status)
export const keyCacheLookupsBy = keyCacheLookupsHot.by; // (result)

// ---- label values known before the first event (metrics/known-series.ts exports them at 0) -----

/** The route label of requests no route matched. */
export const NO_ROUTE = 'none';
export const UPSTREAM_ERROR_CODES = ['bad_gateway', 'gateway_timeout'] as const;
export const RATE_LIMIT_OUTCOMES = ['allowed', 'limited', 'shadow_limited'] as const;
export const KEY_CACHE_RESULTS = ['hit', 'miss', 'stale'] as const;
export const RELOAD_RESULTS = ['ok', 'failed'] as const;
/** Every operation label timeRedis() is called with. */
export const REDIS_OPERATIONS = ['ratelimit', 'key_lookup', 'key_read', 'key_write', 'key_list', 'marker'] as const;
export type RedisOperation = (typeof REDIS_OPERATIONS)[number];

const redisDurationBy = (operation: string) => redisDuration.labels(operation);
const redisErrorsBy = children(redisErrors); // (operation)

/**
 * Records a Redis round trip that began at `startedAt` (performance.now()) in the duration histogram,
 * and counts it when it failed. For a caller that already has a reaction to the reply (the rate
 * limiter's): no promise of its own.
 */
export function observeRedis(operation: RedisOperation, startedAt: number, failed = false): void {
  redisDurationBy(operation).observe((performance.now() - startedAt) / 1000);
  if (failed) redisErrorsBy(operation).inc();
}

/**
 * Times a Redis round trip into the duration histogram, and counts its failure. Not an async
 * function, and no prom-client timer: one promise and two allocations fewer on every request.
 */
export function timeRedis<T>(operation: RedisOperation, run: () => Promise<T>): Promise<T> {
  const startedAt = performance.now();
  let pending: Promise<T>;
  try {
    pending = run();
  } catch (err) {
    pending = Promise.reject(err);
  }
  return pending.then(
    (value) => {
      observeRedis(operation, startedAt);
      return value;
    },
    (err: unknown) => {
      observeRedis(operation, startedAt, true);
      throw err;
    },
  );
}
