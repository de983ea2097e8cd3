import { request } from 'undici';
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { suiteStack, baseConfig } from '../support/gateway';
import { send } from '../support/http';
import { scrape, seriesKey } from '../support/metrics';
import { waitFor } from '../support/wait';
import { catalogue } from '../../src/errors/catalogue';

// Counters and histograms with known label values start at 0 (issue 18): a fresh replica's first
// scrape already has a series for every route, upstream, tier, catalogue code, reload result and
// Redis operation, so increase()/rate() and the alerts see the first event. A reload adds the series
// of what it adds, without resetting what is there.

const KEY = 'sk_test_zero_series_00000000000000';
const INSTANCE = { instance: 'zero-replica' };

type Parts = { redis: { url: string }; upstream: { url: string } };
const config = ({ redis, upstream }: Parts, extra: { route?: boolean } = {}) =>
  baseConfig({
    store: { redis: { url: redis.url }, timeout_ms: 1000 },
    metrics: { default_labels: INSTANCE },
    tiers: { gold: { limits: [{ requests: 100, per: '1m' }], quota: { requests: 1_000_000, per: 'month' }, scopes: ['*'] }, ...(extra.route ? { silver: { limits: [], scopes: ['*'] } } : {}) },
    upstreams: { users: { targets: [upstream.url] }, ...(extra.route ? { orders: { targets: [upstream.url] } } : {}) },
    routes: [
      { name: 'users', match: { path_prefix: '/users', methods: ['GET', 'POST'] }, upstream: 'users' },
      ...(extra.route ? [{ name: 'orders', match: { path_prefix: '/orders' }, upstream: 'orders' }] : []),
    ],
    keys: [{ name: 'k', tier: 'gold', key: KEY }],
  });

const stack = suiteStack((parts) => config(parts));
const series = (name: string, labels: Record<string, string> = {}) => seriesKey(name, { ...labels, ...INSTANCE });

/** Counter and histogram family names of sluice's own metrics, from the exposition's TYPE lines. */
async function sluiceFamilies(): Promise<{ counters: string[]; histograms: string[] }> {
  const text = await (await request(`${stack.gateway.adminUrl}/metrics`)).body.text();
  const typed = [...text.matchAll(/^# TYPE (sluice_\w+) (counter|histogram)$/gm)];
  return {
    counters: typed.filter((m) => m[2] === 'counter').map((m) => m[1]),
    histograms: typed.filter((m) => m[2] === 'histogram').map((m) => m[1]),
  };
}

/** Expects each series to exist with value 0. */
function expectZero(scraped: Map<string, number>, keys: string[]): void {
  const missing = keys.filter((key) => scraped.get(key) !== 0);
  expect(missing).toEqual([]);
}

const statuses5xx = [...new Set(Object.values(catalogue).map((e) => e.status))].filter((s) => s >= 500).map(String);

it('a fresh replica exports every counter family, and each known label value, at 0 before any request', async () => {
  const scraped = await scrape(stack.gateway.adminUrl);
  const names = [...scraped.keys()];

  // Every counter family has at least one series, every histogram family at least one _count.
  const { counters, histograms } = await sluiceFamilies();
  expect(counters.length).toBeGreaterThanOrEqual(9);
  for (const family of counters) expect(names.filter((n) => n === family || n.startsWith(`${family}{`))).not.toEqual([]);
  for (const family of histograms) expect(names.filter((n) => n.startsWith(`${family}_count{`))).not.toEqual([]);

  expectZero(scraped, [
    ...Object.entries(catalogue).map(([code, { status }]) => series('sluice_errors_total', { code, status: String(status) })),
    ...['ok', 'failed'].map((result) => series('sluice_config_reloads_total', { result })),
    ...['hit', 'miss', 'stale'].map((result) => series('sluice_key_cache_lookups_total', { result })),
    ...['allowed', 'limited', 'shadow_limited'].map((outcome) => series('sluice_ratelimit_decisions_total', { tier: 'gold', outcome })),
    series('sluice_ratelimit_quota_refusals_total', { tier: 'gold', period: 'month' }),
    ...['bad_gateway', 'gateway_timeout'].map((code) => series('sluice_upstream_errors_total', { upstream: 'users', code })),
    ...['ratelimit', 'key_lookup', 'key_read', 'key_write', 'key_list', 'marker'].map((operation) => series('sluice_redis_errors_total', { operation })),
    // The route's methods (HEAD with GET) × the gateway's own 5xx answers; unmatched requests too.
    ...['GET', 'HEAD', 'POST'].flatMap((method) => statuses5xx.map((status) => series('sluice_requests_total', { route: 'users', method, status }))),
    ...statuses5xx.map((status) => series('sluice_requests_total', { route: 'none', method: 'GET', status })),
    series('sluice_request_duration_seconds_count', { route: 'users' }),
    series('sluice_request_duration_seconds_count', { route: 'none' }),
    series('sluice_upstream_duration_seconds_count', { upstream: 'users' }),
    series('sluice_request_duration_seconds_bucket', { route: 'users', le: '+Inf' }),
    series('sluice_failed_key_blocks_total'),
    series('sluice_keys_unknown_tier_total'),
    series('sluice_ratelimit_fallback_engaged_total'),
  ]);
  for (const operation of ['ratelimit', 'key_lookup', 'key_read', 'key_list']) {
    expect(scraped.has(series('sluice_redis_duration_seconds_count', { operation }))).toBe(true);
  }
  // No series names a key or a path.
  expect(names.some((n) => n.includes(KEY) || n.includes('/users'))).toBe(false);
});

it('a reload that adds a route, an upstream and a tier adds their zero series; existing series keep their counts', async () => {
  const { gateway, configFile } = stack;
  for (let i = 0; i < 3; i++) expect((await send(`${gateway.url}/users/x`, { headers: { 'x-api-key': KEY } })).status).toBe(200);
  const before = await scrape(gateway.adminUrl);
  expect(before.get(series('sluice_request_duration_seconds_count', { route: 'users' }))).toBe(3);
  expect(before.has(series('sluice_request_duration_seconds_count', { route: 'orders' }))).toBe(false);

  const reloaded = () => gateway.output.filter((line) => line.includes('"config reloaded"')).length;
  const count = reloaded();
  writeFileSync(configFile, stringify(config(stack, { route: true })));
  gateway.process.kill('SIGHUP');
  await waitFor(() => reloaded() > count, 5000, { what: 'the reload' });

  const after = await scrape(gateway.adminUrl);
  expectZero(after, [
    ...['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'].flatMap((method) => statuses5xx.map((status) => series('sluice_requests_total', { route: 'orders', method, status }))),
    series('sluice_request_duration_seconds_count', { route: 'orders' }),
    series('sluice_upstream_duration_seconds_count', { upstream: 'orders' }),
    ...['bad_gateway', 'gateway_timeout'].map((code) => series('sluice_upstream_errors_total', { upstream: 'orders', code })),
    ...['allowed', 'limited'].map((outcome) => series('sluice_ratelimit_decisions_total', { tier: 'silver', outcome })),
  ]);
  expect(after.get(series('sluice_request_duration_seconds_count', { route: 'users' }))).toBe(3);
  expect(after.get(series('sluice_ratelimit_decisions_total', { tier: 'gold', outcome: 'allowed' }))).toBe(3);
  expect(after.get(series('sluice_config_reloads_total', { result: 'ok' }))).toBeGreaterThanOrEqual(1); // SIGHUP, maybe the file watch too
  expect(after.get(series('sluice_config_reloads_total', { result: 'failed' }))).toBe(0);

  // A refused reload moves the failed series from 0 to 1 (what SluiceConfigReloadFailed's increase() sees).
  writeFileSync(configFile, 'routes: [oops');
  gateway.process.kill('SIGHUP');
  await waitFor(async () => (await scrape(gateway.adminUrl)).get(series('sluice_config_reloads_total', { result: 'failed' }))! >= 1, 5000, {
    what: 'the refused reload counted',
  });
});
