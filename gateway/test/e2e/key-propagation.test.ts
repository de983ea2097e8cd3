import { performance } from 'node:perf_hooks';
import { ADMIN_TOKEN, adminApi, createKey, type AdminCall } from '../support/admin';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send, type SimpleResponse } from '../support/http';
import { redisCli, startRedis, startRedisCluster, startSentinelGroup, type TestRedis, type TestRedisCluster, type TestSentinelGroup } from '../support/redis';
import { metricValue } from '../support/scenarios';
import { waitFor } from '../support/wait';
import { startUpstream, type TestUpstream } from '../support/upstream';

// Key changes made through one replica's admin API reach every replica within a second, although
// each caches keys for a minute: revocation, a tier change, a rotation (old key works for the grace
// period, then fails everywhere). Also: a replica cut off from pub/sub clears its cache on reconnect;
// 50 concurrent imports of one key across replicas create it once; Cluster and Sentinel work too.

const CACHE_TTL = '60s';
const GRACE_MS = 3000;
const PROPAGATION_BUDGET_MS = 1000;

interface Fleet {
  gateways: TestGateway[];
  admins: AdminCall[];
  upstream: TestUpstream;
  stop(): Promise<void>;
}

async function startFleet(redisSettings: Record<string, unknown>, count: number): Promise<Fleet> {
  const upstream = await startUpstream();
  const file = writeConfig(
    baseConfig({
      admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN, rotation_grace: `${GRACE_MS}ms` },
      store: { redis: redisSettings, timeout_ms: 1000, cache: { ttl: CACHE_TTL } },
      rate_limiting: { failed_keys: { max_attempts: 10_000, per: '1m', block_for: '1s' } },
      tiers: {
        small: { limits: [{ requests: 2, per: '1m' }], scopes: ['*'] },
        big: { limits: [{ requests: 100, per: '1m' }], scopes: ['*'] },
        unlimited: { limits: [], scopes: ['*'] }, // for tests that poll hard
      },
      upstreams: { app: { targets: [upstream.url] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
    }),
  );
  const gateways = await Promise.all(Array.from({ length: count }, () => startGateway(file)));
  // Each replica subscribes right after it starts listening; wait until all of them hear changes.
  await waitFor(async () => {
    const values = await Promise.all(gateways.map((g) => metricValue(g, 'sluice_key_events_subscribed')));
    return values.every((v) => v === 1);
  }, 10_000);
  return {
    gateways,
    admins: gateways.map((g) => adminApi(g.adminUrl)),
    upstream,
    stop: async () => {
      await Promise.all(gateways.map((g) => g.stop()));
      await upstream.close();
      removeConfig(file);
    },
  };
}

const call = (gateway: TestGateway, key: string) => send(`${gateway.url}/ok`, { headers: { 'x-api-key': key } });

/** How long after `since` each replica first answers as `accepts` says (bounded by twice the budget). */
function propagation(replicas: TestGateway[], since: number, accepts: (res: SimpleResponse) => boolean, key: string): Promise<number[]> {
  return Promise.all(replicas.map((g) => waitFor(async () => accepts(await call(g, key)), 2 * PROPAGATION_BUDGET_MS, { since })));
}

const ms = (values: number[]) => values.map((v) => `${v.toFixed(0)} ms`).join(', ');

/** Revoke through the first replica; every other replica refuses the key within the budget. */
async function revokeAcross(fleet: Fleet, label: string): Promise<void> {
  const [a, ...others] = fleet.gateways;
  const created = await createKey(fleet.admins[0], { name: `${label} revoke`, tier: 'big' });
  for (const g of fleet.gateways) expect((await call(g, created.key)).status).toBe(200); // cached everywhere, for a minute
  const started = performance.now();
  expect((await fleet.admins[0]('DELETE', `/v1/keys/${created.id}`)).status).toBe(200);
  const times = await propagation(others, started, (res) => res.status === 401, created.key);
  console.log(`${label}: revocation through replica A reached the other replicas in ${ms(times)} (cache TTL ${CACHE_TTL})`);
  for (const t of times) expect(t).toBeLessThan(PROPAGATION_BUDGET_MS);
  for (const g of fleet.gateways) expectEnvelope(await call(g, created.key), 401, 'invalid_api_key');
  expectEnvelope(await call(a, created.key), 401, 'invalid_api_key');
}

describe('three replicas on one Redis, keys cached for a minute', () => {
  let redis: TestRedis;
  let fleet: Fleet;
  beforeAll(async () => {
    redis = await startRedis({ destructive: true });
    fleet = await startFleet({ url: redis.url }, 3);
  });
  afterAll(async () => {
    await fleet?.stop();
    await redis?.stop();
  });

  it('a revocation through A: B and C answer 401 invalid_api_key within a second', async () => {
    await revokeAcross(fleet, 'standalone');
  });

  it('a tier change through A: B and C apply the new limits within a second (the quota is kept)', async () => {
    const [, b, c] = fleet.gateways;
    const created = await createKey(fleet.admins[0], { name: 'upgrade', tier: 'small' });
    expect((await call(b, created.key)).status).toBe(200);
    expect((await call(c, created.key)).status).toBe(200);
    expectEnvelope(await call(b, created.key), 429, 'rate_limit_exceeded');
    expectEnvelope(await call(c, created.key), 429, 'rate_limit_exceeded');

    const started = performance.now();
    expect((await fleet.admins[0]('PATCH', `/v1/keys/${created.id}`, { tier: 'big' })).status).toBe(200);
    const times = await propagation([b, c], started, (res) => res.status === 200 && res.headers['x-ratelimit-limit'] === '100', created.key);
    console.log(`standalone: tier change through replica A reached B and C in ${ms(times)}`);
    for (const t of times) expect(t).toBeLessThan(PROPAGATION_BUDGET_MS);
    // 2 counted before (refusals count nothing) + one answer per poll that succeeded: the counter carried over
    const res = await call(b, created.key);
    expect(Number(res.headers['x-ratelimit-remaining'])).toBeLessThanOrEqual(100 - 2 - 3);
  });

  it('a rotation through A: the new key works everywhere at once, the old one for the grace period, then nowhere', async () => {
    const [, b, c] = fleet.gateways;
    const created = await createKey(fleet.admins[0], { name: 'rotate', tier: 'unlimited' });
    for (const g of [b, c]) expect((await call(g, created.key)).status).toBe(200);

    const rotated = await fleet.admins[0]('POST', `/v1/keys/${created.id}/rotate`);
    const rotatedAt = performance.now();
    expect(rotated.status).toBe(201);
    for (const g of [b, c]) {
      expect((await call(g, rotated.json.key)).status).toBe(200);
      expect((await call(g, created.key)).status).toBe(200);
    }
    expect(performance.now() - rotatedAt).toBeLessThan(GRACE_MS); // the old key was checked inside its grace period

    const times = await Promise.all(
      [b, c].map((g) => waitFor(async () => (await call(g, created.key)).status === 401, GRACE_MS + 2 * PROPAGATION_BUDGET_MS, { since: rotatedAt })),
    );
    console.log(`standalone: the rotated-out key stopped on B and C ${ms(times)} after the rotation (grace ${GRACE_MS} ms)`);
    for (const t of times) {
      expect(t).toBeGreaterThanOrEqual(GRACE_MS - 300); // the 201 left the server a little before rotatedAt
      expect(t).toBeLessThan(GRACE_MS + PROPAGATION_BUDGET_MS);
    }
    for (const g of fleet.gateways) expect((await call(g, rotated.json.key)).status).toBe(200);
  });

  it('50 concurrent imports of the same key across the replicas: exactly one 201, 49 × 409 key_exists', async () => {
    const key = 'sk_test_concurrent_import_0000001';
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => fleet.admins[i % fleet.admins.length]('POST', '/v1/keys', { name: `race ${i}`, tier: 'big', key })),
    );
    const statuses = answers.map((res) => res.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(49);
    for (const res of answers.filter((r) => r.status === 409)) expectEnvelope(res, 409, 'key_exists');
    const listed = await fleet.admins[1]('GET', '/v1/keys?limit=500');
    expect(listed.json.keys.filter((k: { name: string }) => k.name.startsWith('race '))).toHaveLength(1);
    for (const g of fleet.gateways) expect((await call(g, key)).status).toBe(200);
  });

  it('a replica cut off from pub/sub clears its whole cache when it reconnects', async () => {
    const [, b] = fleet.gateways;
    const created = await createKey(fleet.admins[0], { name: 'missed', tier: 'big' });
    expect((await call(b, created.key)).status).toBe(200);
    // A change nobody announces (as if published while B was away): B's cache keeps the old record...
    await redisCli(redis.port, 'HSET', `sluice:key:{${created.id}}`, 'status', 'revoked');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await call(b, created.key)).status).toBe(200);
    // ...until its subscription drops and comes back.
    expect(Number(await redisCli(redis.port, 'CLIENT', 'KILL', 'TYPE', 'pubsub'))).toBe(3);
    const took = await waitFor(async () => (await call(b, created.key)).status === 401, 5000);
    console.log(`standalone: after a pub/sub disconnect the replica re-subscribed and cleared its cache in ${took.toFixed(0)} ms`);
    await waitFor(async () => (await metricValue(b, 'sluice_key_events_subscribed')) === 1, 5000);
    expect(b.output.some((line) => line.includes('lost the key change feed'))).toBe(true);
    await revokeAcross(fleet, 'standalone, after the reconnect'); // and it hears changes again
  });
});

describe('Redis Cluster (3 masters)', () => {
  let cluster: TestRedisCluster;
  let fleet: Fleet;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    fleet = await startFleet({ cluster: { nodes: cluster.nodes.map((n) => `${n.host}:${n.port}`) } }, 2);
  });
  afterAll(async () => {
    await fleet?.stop();
    await cluster?.stop();
  });

  it('a revocation through A reaches B within a second', async () => {
    await revokeAcross(fleet, 'cluster');
  });
});

describe('Sentinel', () => {
  let group: TestSentinelGroup;
  let fleet: Fleet;
  beforeAll(async () => {
    group = await startSentinelGroup();
    fleet = await startFleet({ sentinel: { name: group.masterName, sentinels: group.sentinels.map((s) => `${s.host}:${s.port}`) } }, 2);
  });
  afterAll(async () => {
    await fleet?.stop();
    await group?.stop();
  });

  it('a revocation through A reaches B within a second', async () => {
    await revokeAcross(fleet, 'sentinel');
  });
});
