import Redis from 'ioredis';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/loader';
import { createLogger } from '../../src/log';
import { KeyCache } from '../../src/keys/cache';
import { hashSecret } from '../../src/keys/records';
import { connectKeyStore, openBackends, type Backends } from '../../src/backends';
import { initialiseStore } from '../../src/keys/store-init';
import { LimiterUnavailableError } from '../../src/ratelimit/resilient-limiter';
import { baseConfig } from '../support/gateway';
import { startRedis, type TestRedis } from '../support/redis';

// The limiter and the key store judge Redis by Redis: a live Redis that answers late is waited for
// (its decision stands, or 503 past store.max_wait_ms), never replaced by a local decision; concurrent
// lookups of one key share a round trip; and when Redis truly goes silent, the local shares start
// from what Redis last reported.

const TIMEOUT_MS = 150;
const MAX_WAIT_MS = 1200;
const windows = [{ name: 'w', limit: 100, windowMs: 60_000 }];

let redis: TestRedis;
let admin: Redis;

beforeAll(async () => {
  redis = await startRedis({ destructive: true });
  admin = new Redis(redis.url);
});

afterAll(async () => {
  redis?.resume();
  admin?.disconnect();
  await redis?.stop();
});

async function backendsFor(prefix: string, extra: Record<string, unknown> = {}): Promise<Backends> {
  const config = parseConfig(
    stringify(
      baseConfig({
        store: { redis: { url: redis.url, key_prefix: `${prefix}:` }, timeout_ms: TIMEOUT_MS, max_wait_ms: MAX_WAIT_MS, ...extra },
        tiers: { t: { limits: [], scopes: ['*'] } },
        upstreams: { app: { targets: ['http://127.0.0.1:9'] } },
        routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      }),
    ),
  );
  const log = createLogger('silent');
  const backends = openBackends(config, log);
  expect(await connectKeyStore(backends.keyStore, log)).toBe(true);
  await initialiseStore(backends.keyStore, config);
  return backends;
}

const fallbackActive = (backends: Backends) => (backends.limiter as unknown as { fallbackActive: boolean }).fallbackActive;

it('a live Redis that holds back writes longer than timeout_ms is waited for: its decision stands, no fallback', async () => {
  const backends = await backendsFor('late');
  try {
    // CLIENT PAUSE WRITE holds every write (our script) but still answers reads and PINGs: Redis is alive.
    await admin.call('CLIENT', 'PAUSE', String(TIMEOUT_MS * 3), 'WRITE');
    const started = Date.now();
    const decisions = await Promise.all(Array.from({ length: 5 }, () => backends.limiter.check({ subject: 's', windows, cost: 1 })));
    const tookMs = Date.now() - started;
    console.log(`Redis held writes for ${TIMEOUT_MS * 3} ms (timeout ${TIMEOUT_MS} ms): 5 decisions from Redis after ${tookMs} ms`);
    expect(tookMs).toBeGreaterThanOrEqual(TIMEOUT_MS * 2);
    // Redis decided: its counter holds all five (a local decision would leave it untouched).
    expect(decisions.map((d) => d.windows[0].used).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5]);
    expect(fallbackActive(backends)).toBe(false);
  } finally {
    await admin.call('CLIENT', 'UNPAUSE');
    await backends.close();
  }
});

it('past store.max_wait_ms a live but late Redis gives a 503-type failure, never a local decision or the fallback', async () => {
  const backends = await backendsFor('busy');
  try {
    await admin.call('CLIENT', 'PAUSE', String(MAX_WAIT_MS + 800), 'WRITE');
    const started = Date.now();
    const outcomes = await Promise.all(
      Array.from({ length: 4 }, () => backends.limiter.check({ subject: 's', windows, cost: 1 }).then(() => 'decided', (err: Error) => err)),
    );
    const tookMs = Date.now() - started;
    console.log(`Redis held writes past max_wait_ms (${MAX_WAIT_MS} ms): gave up after ${tookMs} ms`);
    for (const outcome of outcomes) expect(outcome).toBeInstanceOf(LimiterUnavailableError);
    expect(tookMs).toBeGreaterThanOrEqual(MAX_WAIT_MS - 5);
    expect(tookMs).toBeLessThan(MAX_WAIT_MS + 600);
    expect(fallbackActive(backends)).toBe(false);
    // The key store too: a late answer is "busy", not a store outage.
    const lookup = await backends.keyStore.findBySecretHash('0'.repeat(64)).then(
      () => 'answered',
      (err: Error) => err.name,
    );
    expect(['answered', 'StoreBusyError']).toContain(lookup);
  } finally {
    await admin.call('CLIENT', 'UNPAUSE');
    await backends.close();
  }
});

it('a frozen Redis is still an outage after timeout_ms: the fallback engages', async () => {
  const backends = await backendsFor('frozen');
  try {
    await backends.limiter.check({ subject: 's', windows, cost: 1 });
    redis.pause();
    const started = Date.now();
    for (let i = 0; i < 3; i++) await backends.limiter.check({ subject: 's', windows, cost: 1 });
    const tookMs = Date.now() - started;
    expect(fallbackActive(backends)).toBe(true);
    expect(tookMs).toBeLessThan(TIMEOUT_MS * 3 * 2);
  } finally {
    redis.resume();
    await backends.close();
  }
});

it('when the fallback engages, a key starts from what Redis last reported: the switch admits nothing extra', async () => {
  const backends = await backendsFor('seeded');
  try {
    for (let i = 0; i < 80; i++) expect((await backends.limiter.check({ subject: 'k', windows, cost: 1 })).allowed).toBe(true);
    redis.pause();
    let admitted = 0;
    for (let i = 0; i < 60; i++) if ((await backends.limiter.check({ subject: 'k', windows, cost: 1 })).allowed) admitted++;
    expect(fallbackActive(backends)).toBe(true);
    // One live replica (replicas_hint 1): its local remaining is 100 − 80 = 20, not a fresh 100.
    console.log(`80 of 100 used in Redis, then Redis frozen: the fallback admitted ${admitted} more`);
    expect(admitted).toBe(20);
  } finally {
    redis.resume();
    await backends.close();
  }
});

it('concurrent lookups of one uncached key share one Redis round trip', async () => {
  const backends = await backendsFor('single');
  const secret = 'sk_test_single_flight_000000000';
  const { record } = await backends.keyStore.create({ name: 'k', tier: 't', key: secret });
  const cache = new KeyCache(backends.keyStore, { ttlMs: 60_000, maxEntries: 100 });
  const watcher = new Redis(redis.url);
  const monitor = await watcher.monitor();
  const gets: string[][] = [];
  monitor.on('monitor', (_time: string, args: string[]) => {
    if (args[0].toLowerCase() === 'get' && args[1] === `single:secret:${hashSecret(secret)}`) gets.push(args);
  });
  try {
    const found = await Promise.all(Array.from({ length: 500 }, () => cache.find(secret)));
    await new Promise((resolve) => setTimeout(resolve, 200)); // the last MONITOR lines
    expect(found.every((f) => f.record?.id === record.id)).toBe(true);
    expect(gets).toHaveLength(1);
  } finally {
    monitor.disconnect();
    watcher.disconnect();
    await backends.close();
  }
});
