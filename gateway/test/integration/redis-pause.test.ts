import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/loader';
import { createLogger } from '../../src/log';
import { connectKeyStore, openBackends } from '../../src/backends';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';

import { startRedis, type TestRedis } from '../support/redis';
import { metricValue } from '../support/scenarios';
import { waitFor } from '../support/wait';
import { startUpstream, type TestUpstream } from '../support/upstream';

// Redis frozen with SIGSTOP under steady load: requests never wait much longer than the store
// timeout, the failure policy takes over (and says so), and Redis decides again after SIGCONT.

const KEY = 'sk_test_pause_0000000000000000';
const TIMEOUT_MS = 500;

let redis: TestRedis;
let upstream: TestUpstream;

beforeAll(async () => {
  redis = await startRedis({ destructive: true });
  upstream = await startUpstream();
});

afterAll(async () => {
  redis?.resume();
  await upstream?.close();
  await redis?.stop();
});

type Policy = 'fail_open_local' | 'fail_closed';

/** One key on the test Redis (its own key prefix per policy), a store timeout of TIMEOUT_MS. */
const configFor = (policy: Policy) =>
  baseConfig({
    failure_policy: policy,
    store: { redis: { url: redis.url, key_prefix: `${policy}:` }, timeout_ms: TIMEOUT_MS, cache: { ttl: '1m' } },
    tiers: { t: { limits: [{ requests: 100_000, per: '1m' }], scopes: ['*'] } },
    upstreams: { app: { targets: [upstream.url] } },
    routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
    keys: [{ name: 'k', tier: 't', key: KEY }],
  });

/** A gateway on the test Redis, its key cached. */
async function gatewayWith(policy: Policy): Promise<{ gateway: TestGateway; file: string }> {
  const file = writeConfig(configFor(policy));
  const gateway = await startGateway(file);
  // Subscribing to key changes expires the cache: only a key read after that stays cached.
  await waitFor(async () => (await metricValue(gateway, 'sluice_key_events_subscribed')) === 1, 5_000);
  const cached = await request(`${gateway.url}/ok`, { headers: { 'x-api-key': KEY } });
  await cached.body.dump();
  expect(cached.statusCode).toBe(200);
  return { gateway, file };
}

interface Sample {
  at: number;
  ms: number;
  status: number;
  code?: string;
  retryAfter?: string;
}

/** `clients` loops of back-to-back requests for `durationMs`. */
async function steadyLoad(gateway: TestGateway, clients: number, durationMs: number): Promise<Sample[]> {
  const agent = new Agent({ connections: clients });
  const samples: Sample[] = [];
  const end = Date.now() + durationMs;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < end) {
        const started = Date.now();
        const res = await request(`${gateway.url}/ok`, { headers: { 'x-api-key': KEY }, dispatcher: agent });
        const text = await res.body.text();
        samples.push({
          at: started,
          ms: Date.now() - started,
          status: res.statusCode,
          code: res.statusCode === 200 ? undefined : JSON.parse(text).error.code,
          retryAfter: res.headers['retry-after'] as string | undefined,
        });
      }
    }),
  );
  await agent.close();
  return samples;
}

const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))];

it('fail_open_local: bounded latency, local limits while Redis is frozen, Redis again after SIGCONT', async () => {
  const { gateway, file } = await gatewayWith('fail_open_local');
  try {
    const load = steadyLoad(gateway, 8, 7_000);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const pausedAt = Date.now();
    redis.pause();
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(await metricValue(gateway, 'sluice_ratelimit_fallback_active')).toBe(1);
    redis.resume();
    const resumedAt = Date.now();
    const samples = await load;

    const during = samples.filter((s) => s.at >= pausedAt && s.at < resumedAt).map((s) => s.ms);
    console.log(
      `Redis frozen 3 s under 8 clients (timeout ${TIMEOUT_MS} ms): ${samples.length} requests, ${during.length} during the pause; ` +
        `latency during pause p50 ${percentile(during, 50)} ms, p99 ${percentile(during, 99)} ms, max ${Math.max(...during)} ms`,
    );
    expect(samples.every((s) => s.status === 200)).toBe(true);
    expect(during.length).toBeGreaterThan(50); // the fallback kept serving
    expect(Math.max(...during)).toBeLessThan(TIMEOUT_MS * 2); // one timeout at most, plus a busy machine
    expect(await metricValue(gateway, 'sluice_ratelimit_fallback_engaged_total')).toBe(1);
    expect(gateway.output.some((l) => l.includes('rate limiting without Redis'))).toBe(true);

    // Within about a probe interval Redis decides again: its counter for the key moves.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(await metricValue(gateway, 'sluice_ratelimit_fallback_active')).toBe(0);
    expect(gateway.output.some((l) => l.includes('Redis answers again'))).toBe(true);
    const first = await request(`${gateway.url}/ok`, { headers: { 'x-api-key': KEY } });
    await first.body.dump();
    const second = await request(`${gateway.url}/ok`, { headers: { 'x-api-key': KEY } });
    await second.body.dump();
    expect(Number(first.headers['x-ratelimit-remaining']) - Number(second.headers['x-ratelimit-remaining'])).toBe(1);
    // Redis' count includes what it admitted before the pause: far more than the local limiter saw.
    expect(Number(second.headers['x-ratelimit-remaining'])).toBeLessThan(100_000 - samples.filter((s) => s.at < pausedAt).length);
  } finally {
    redis.resume();
    await gateway.stop();
    removeConfig(file);
  }
});

it('fail_closed: 503 service_unavailable with Retry-After while Redis is frozen, 200 again after', async () => {
  const { gateway, file } = await gatewayWith('fail_closed');
  try {
    redis.pause();
    const samples = await steadyLoad(gateway, 4, 2_000);
    // Under fail_closed a replica without Redis cannot serve: it reports not-ready.
    const ready = await request(`${gateway.adminUrl}/readyz`);
    expect(ready.statusCode).toBe(503);
    expect(((await ready.body.json()) as { error: { details: unknown } }).error.details).toEqual({ reason: 'unreachable' });
    redis.resume();
    console.log(`fail_closed, Redis frozen 2 s under 4 clients: ${samples.length} answers, max ${Math.max(...samples.map((x) => x.ms))} ms`);
    expect(samples.length).toBeGreaterThanOrEqual(4); // every client got answers, not a hang
    expect(samples.every((s) => s.status === 503 && s.code === 'service_unavailable' && s.retryAfter === '1')).toBe(true);
    expect(Math.max(...samples.map((s) => s.ms))).toBeLessThan(TIMEOUT_MS * 2); // one timeout at most, plus a busy machine
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const after = await request(`${gateway.url}/ok`, { headers: { 'x-api-key': KEY } });
    expect(after.statusCode).toBe(200);
    await after.body.dump();
  } finally {
    redis.resume();
    await gateway.stop();
    removeConfig(file);
  }
});

it('a request-path Redis call gives up timeout_ms after it was made, even queued behind one already waiting', async () => {
  // A client's own command timer (ioredis' started only when its pipeline was sent) would let the second
  // call below wait out the first one's timeout, then its own: the deadline is ours, from the call.
  const config = parseConfig(stringify(configFor('fail_closed')));
  const log = createLogger('silent');
  const backends = openBackends(config, log);
  try {
    expect(await connectKeyStore(backends.keyStore, log)).toBe(true);
    redis.pause();
    const windows = [{ name: 'w', limit: 10, windowMs: 60_000 }];
    const timed = async (call: () => Promise<unknown>) => {
      const started = Date.now();
      await call().catch(() => undefined);
      return Date.now() - started;
    };
    const first = timed(() => backends.limiter.check({ subject: 'a', windows, cost: 1 }));
    await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS / 2));
    const [limiterMs, lookupMs] = await Promise.all([
      timed(() => backends.limiter.check({ subject: 'b', windows, cost: 1 })),
      timed(() => backends.keyStore.findBySecretHash('0'.repeat(64))),
    ]);
    await first;
    console.log(`Redis frozen, second call made ${TIMEOUT_MS / 2} ms after the first: limiter gave up after ${limiterMs} ms, key lookup after ${lookupMs} ms`);
    // Queued behind the first, they would take about 1.5 × the timeout; a deadline of their own, 1 ×.
    expect(limiterMs).toBeLessThan(TIMEOUT_MS * 1.3);
    expect(lookupMs).toBeLessThan(TIMEOUT_MS * 1.3);
    expect(limiterMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
  } finally {
    redis.resume();
    await backends.close();
  }
});
