import { createHash } from 'node:crypto';
import { suiteStack, baseConfig, type TestGateway } from '../support/gateway';
import { parseRawResponse, rawExchange, send } from '../support/http';
import { changed, scrape, seriesKey } from '../support/metrics';
import { closedPort } from '../support/ports';
import { redisCli, type TestRedis } from '../support/redis';
import { ADMIN_TOKEN, adminApi } from '../support/admin';
import { catalogue } from '../../src/errors/catalogue';

// Every envelope the public listener can send, one scenario each: sluice_errors_total must move by
// exactly the number of envelopes sent, under the right code and status, and nothing else must move.

const KEY = 'sk_test_metrics_000000000000000';
const LIMITED = 'sk_test_metrics_limited_0000000';
const NARROW = 'sk_test_metrics_narrow_00000000';
const SINGLE = 'sk_test_metrics_single_00000000';

let redis: TestRedis;
let gateway: TestGateway;

const stack = suiteStack(async ({ redis, upstream }) => {
  const dead = await closedPort();
  return baseConfig({
    listen: { host: '127.0.0.1', port: 0, headers_timeout: '1s' },
    admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
    store: { redis: { url: redis.url }, timeout_ms: 1000 },
    metrics: { default_labels: { instance: 'test-replica' } },
    trusted_proxies: ['127.0.0.1'], // so the failed-key scenarios can come from their own address
    rate_limiting: { failed_keys: { max_attempts: 2, per: '1m', block_for: '1m' } },
    tiers: {
      t: { limits: [], scopes: ['*'] },
      limited: { limits: [{ requests: 1, per: '1m' }], scopes: ['*'] },
      narrow: { limits: [], scopes: ['a'] },
      single: { limits: [], concurrency: 1, scopes: ['*'] },
    },
    upstreams: {
      app: { targets: [upstream.url], timeout_ms: 300 },
      dead: { targets: [`http://127.0.0.1:${dead}`], breaker: { failures: 1, cooldown: '1m' } },
    },
    routes: [
      { name: 'small', match: { path_prefix: '/small' }, upstream: 'app', max_body_bytes: 10 },
      { name: 'dead', match: { path_prefix: '/dead' }, upstream: 'dead', retries: 0 },
      { name: 'app', match: { path_prefix: '/app' }, upstream: 'app', scopes: ['b'] },
    ],
    keys: [
      { name: 'k', tier: 't', key: KEY },
      { name: 'limited', tier: 'limited', key: LIMITED },
      { name: 'narrow', tier: 'narrow', key: NARROW },
      { name: 'single', tier: 'single', key: SINGLE },
    ],
  });
});

beforeAll(() => {
  ({ redis, gateway } = stack);
});

const get = (path: string, headers: Record<string, string> = {}) => send(`${gateway.url}${path}`, { headers });
const raw = async (payload: string) => parseRawResponse(await rawExchange(gateway.port, payload, 3000)).status;
const GUESSER = '203.0.113.9';
const INSTANCE = { instance: 'test-replica' };
const series = (code: string, status: number) => seriesKey('sluice_errors_total', { code, status: String(status), ...INSTANCE });

const scenarios: { code: string; status: number; times: number; run: () => Promise<number[]> }[] = [
  { code: 'invalid_request', status: 400, times: 1, run: async () => [await raw('GET /a%2Fb HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')] },
  { code: 'missing_api_key', status: 401, times: 2, run: async () => [(await get('/app/ok')).status, (await get('/app/ok')).status] },
  { code: 'forbidden', status: 403, times: 1, run: async () => [(await get('/app/ok', { 'x-api-key': NARROW })).status] },
  { code: 'route_not_found', status: 404, times: 1, run: async () => [(await get('/nowhere', { 'x-api-key': KEY })).status] },
  { code: 'request_timeout', status: 408, times: 1, run: async () => [await raw('GET /app/ok HTTP/1.1\r\nhost: x\r\n')] },
  {
    code: 'payload_too_large',
    status: 413,
    times: 1,
    run: async () => [(await send(`${gateway.url}/small/ok`, { method: 'POST', headers: { 'x-api-key': KEY }, body: 'x'.repeat(11) })).status],
  },
  { code: 'rate_limit_exceeded', status: 429, times: 1, run: async () => [(await get('/small/ok', { 'x-api-key': LIMITED })).status, (await get('/small/ok', { 'x-api-key': LIMITED })).status].slice(1) },
  {
    code: 'too_many_concurrent_requests',
    status: 429,
    times: 1,
    run: async () => {
      const holder = get('/small/slow?ms=250', { 'x-api-key': SINGLE }); // holds the key's one slot
      await new Promise((resolve) => setTimeout(resolve, 100));
      const refused = (await get('/small/ok', { 'x-api-key': SINGLE })).status;
      expect((await holder).status).toBe(200);
      return [refused];
    },
  },
  { code: 'headers_too_large', status: 431, times: 1, run: async () => [await raw(`GET / HTTP/1.1\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`)] },
  {
    code: 'internal_error',
    status: 500,
    times: 1,
    run: async () => {
      const secret = 'sk_test_corrupt_for_metrics_000';
      const sha = createHash('sha256').update(secret).digest('hex');
      await redisCli(redis.port, 'SET', `sluice:secret:${sha}`, 'key_broken');
      await redisCli(redis.port, 'HSET', 'sluice:key:{key_broken}', 'id', 'key_broken', 'secret_hashes', '{not json');
      return [(await get('/small/ok', { 'x-api-key': secret })).status];
    },
  },
  { code: 'bad_gateway', status: 502, times: 1, run: async () => [(await get('/dead/ok', { 'x-api-key': KEY })).status] },
  // the breaker opened on that failure (failures: 1): the next one is refused without connecting
  { code: 'service_unavailable', status: 503, times: 1, run: async () => [(await get('/dead/ok', { 'x-api-key': KEY })).status] },
  { code: 'gateway_timeout', status: 504, times: 1, run: async () => [(await get('/small/slow?ms=3000', { 'x-api-key': KEY })).status] },
  {
    code: 'invalid_api_key',
    status: 401,
    times: 2,
    run: async () => [
      (await get('/small/ok', { 'x-api-key': 'sk_live_wrong_000000000001', 'x-forwarded-for': GUESSER })).status,
      (await get('/small/ok', { 'x-api-key': 'sk_live_wrong_000000000002', 'x-forwarded-for': GUESSER })).status,
    ],
  },
  {
    code: 'too_many_failed_attempts',
    status: 429,
    times: 1,
    run: async () => [(await get('/small/ok', { 'x-api-key': 'sk_live_wrong_000000000003', 'x-forwarded-for': GUESSER })).status],
  },
];

// The admin API's envelopes count too: they are built by the same function.
const admin = () => adminApi(gateway.adminUrl);
scenarios.push(
  { code: 'invalid_admin_token', status: 401, times: 1, run: async () => [(await adminApi(gateway.adminUrl, 'wrong-token')('GET', '/v1/keys')).status] },
  { code: 'invalid_parameters', status: 400, times: 1, run: async () => [(await admin()('POST', '/v1/keys', { tier: 't' })).status] },
  { code: 'key_not_found', status: 404, times: 1, run: async () => [(await admin()('GET', '/v1/keys/key_00000000000000000000')).status] },
  { code: 'unknown_tier', status: 422, times: 1, run: async () => [(await admin()('POST', '/v1/keys', { name: 'x', tier: 'gold' })).status] },
  { code: 'validation_failed', status: 422, times: 1, run: async () => [(await admin()('POST', '/v1/keys', { name: 'x', tier: 'narrow', scopes: ['b'] })).status] },
  { code: 'key_exists', status: 409, times: 1, run: async () => [(await admin()('POST', '/v1/keys', { name: 'dup', tier: 't', key: KEY })).status] },
);

describe('sluice_errors_total moves once per envelope sent', () => {
  it.each(scenarios)('$code ($status) × $times', async ({ code, status, times, run }) => {
    await new Promise((resolve) => setTimeout(resolve, 50)); // let the previous request's bookkeeping settle
    const before = await scrape(gateway.adminUrl);
    const statuses = await run();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const after = await scrape(gateway.adminUrl);
    expect(statuses).toEqual(Array(times).fill(status));
    expect(changed(before, after, 'sluice_errors_total')).toEqual({ [series(code, status)]: times });
  });
});

it('covers every code of the catalogue', () => {
  expect(new Set(scenarios.map((s) => s.code))).toEqual(new Set(Object.keys(catalogue)));
});

describe('other metrics', () => {
  it('counts requests by route, method and status, with latency histograms for gateway and upstream', async () => {
    const before = await scrape(gateway.adminUrl);
    for (let i = 0; i < 3; i++) expect((await get('/small/ok', { 'x-api-key': KEY })).status).toBe(200);
    const after = await scrape(gateway.adminUrl);
    expect(changed(before, after, 'sluice_requests_total')).toEqual({ [seriesKey('sluice_requests_total', { route: 'small', method: 'GET', status: '200', ...INSTANCE })]: 3 });
    expect(changed(before, after, 'sluice_request_duration_seconds_count')).toEqual({ [seriesKey('sluice_request_duration_seconds_count', { route: 'small', ...INSTANCE })]: 3 });
    expect(changed(before, after, 'sluice_upstream_duration_seconds_count')).toEqual({ [seriesKey('sluice_upstream_duration_seconds_count', { upstream: 'app', ...INSTANCE })]: 3 });
    // The request path made no Redis call; the store's health check (an EXISTS of the marker, once a
    // second, on its own timer) may land between the two scrapes, and is not the request path.
    const redisCalls = Object.entries(changed(before, after, 'sluice_redis_duration_seconds_count')).filter(([series]) => !series.includes('operation="marker"'));
    expect(redisCalls).toEqual([]);
  });

  it('reports breaker state per target, rate-limit decisions by tier, in-flight and the process metrics', async () => {
    const metrics = await scrape(gateway.adminUrl);
    const dead = [...metrics.keys()].find((k) => k.startsWith('sluice_upstream_breaker_state{') && k.includes('upstream="dead"'));
    expect(metrics.get(dead!)).toBe(1);
    expect(metrics.get(seriesKey('sluice_ratelimit_decisions_total', { tier: 'limited', outcome: 'limited', ...INSTANCE }))).toBe(1);
    expect(metrics.get(seriesKey('sluice_in_flight_requests', INSTANCE))).toBe(0);
    expect([...metrics.keys()].some((k) => k.startsWith('process_resident_memory_bytes'))).toBe(true);
    expect([...metrics.keys()].some((k) => k.startsWith('nodejs_eventloop_lag_seconds'))).toBe(true);
  });

  it('logs and forwards a W3C traceparent', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const res = await get('/small/headers', { 'x-api-key': KEY, traceparent, 'x-request-id': 'trace-test' });
    expect(res.json.headers.traceparent).toBe(traceparent);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const line = gateway.output.find((l) => l.includes('"request_id":"trace-test"'));
    expect(JSON.parse(line!).traceparent).toBe(traceparent);
  });

  it('never shows the admin token or a key in logs, metrics or bodies', async () => {
    const text = [...(await scrape(gateway.adminUrl)).keys()].join('\n') + gateway.output.join('\n');
    for (const secret of [ADMIN_TOKEN, KEY, LIMITED, NARROW]) expect(text).not.toContain(secret);
  });

  it('never puts a key, a path or a key id in a label', async () => {
    const text = [...(await scrape(gateway.adminUrl)).keys()].join('\n');
    for (const secret of [KEY, LIMITED, NARROW, 'sk_live_wrong', '/small/ok', '/nowhere', GUESSER]) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/key_[0-9a-f]{20}/); // key ids
  });
});
