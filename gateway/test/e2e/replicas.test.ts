import { maxInAnyWindow } from '../support/arrivals';
import { LIMIT, startReplicas, type Replicas } from '../support/scenarios';
import { startRedis, startRedisCluster, startSentinelGroup, type TestRedis, type TestRedisCluster, type TestSentinelGroup } from '../support/redis';

// Three gateway processes, one key limited to 50 per 10 s, 600 concurrent requests round-robin over
// the replicas: never more than 50 reach the upstream, exactly 50 when no replica fell back.

const TOTAL = 600;

function report(label: string, outcome: { reachedUpstream: number; statuses: Record<number, number>; fallbackEngaged: number }) {
  console.log(`${label}: ${TOTAL} requests → upstream got ${outcome.reachedUpstream} (limit ${LIMIT}); statuses ${JSON.stringify(outcome.statuses)}; fallback engaged ${outcome.fallbackEngaged}×`);
}

describe('standalone Redis', () => {
  let redis: TestRedis;
  let replicas: Replicas;
  beforeAll(async () => {
    redis = await startRedis({ destructive: true });
    replicas = await startReplicas({ url: redis.url });
  });
  afterAll(async () => {
    await replicas?.stop();
    await redis?.stop();
  });

  it('admits exactly the limit across 3 replicas; every refusal is the exact 429', async () => {
    const outcome = await replicas.burst(TOTAL);
    report('standalone', outcome);
    expect(outcome.invalid).toEqual([]);
    expect(outcome.malformed429).toEqual([]);
    expect(outcome.reachedUpstream).toBeLessThanOrEqual(LIMIT);
    expect(outcome.fallbackEngaged).toBe(0);
    expect(outcome.reachedUpstream).toBe(LIMIT);
    expect(outcome.statuses).toEqual({ 200: LIMIT, 429: TOTAL - LIMIT });
  });
});

// Under pressure: a burst that saturates every replica's event loop must still be decided by a healthy
// Redis (no fallback, no local shares, no 503), with the timeout the deploy configs ship (100 ms).
describe('a burst on a healthy Redis (store.timeout_ms 100)', () => {
  const BURST = { limit: 100, windowSeconds: 5, timeoutMs: 100 };
  const BURST_TOTAL = 1500;
  let redis: TestRedis;
  let replicas: Replicas;
  beforeAll(async () => {
    redis = await startRedis({ destructive: true });
    replicas = await startReplicas({ url: redis.url }, 3, {}, BURST);
  });
  afterAll(async () => {
    await replicas?.stop();
    await redis?.stop();
  });

  it(`${BURST_TOTAL} concurrent requests on one key (100 per 5 s): Redis decides every one`, async () => {
    const started = Date.now();
    const outcome = await replicas.burst(BURST_TOTAL);
    const tookMs = Date.now() - started;
    const peak = maxInAnyWindow(outcome.arrivals, BURST.windowSeconds * 1000);
    console.log(
      `burst: ${BURST_TOTAL} requests in ${tookMs} ms → upstream got ${outcome.reachedUpstream} (peak ${peak} in 5 s, limit ${BURST.limit}); statuses ${JSON.stringify(outcome.statuses)}; fallback engaged ${outcome.fallbackEngaged}×`,
    );
    expect(outcome.invalid).toEqual([]);
    expect(outcome.malformed429).toEqual([]);
    expect(outcome.fallbackEngaged).toBe(0);
    expect(peak).toBeLessThanOrEqual(BURST.limit);
    expect(outcome.reachedUpstream).toBeGreaterThanOrEqual(95);
    expect(outcome.statuses).toEqual({ 200: outcome.reachedUpstream, 429: BURST_TOTAL - outcome.reachedUpstream });
  });
});

describe('Redis Cluster (3 masters)', () => {
  let cluster: TestRedisCluster;
  let replicas: Replicas;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    replicas = await startReplicas({ cluster: { nodes: cluster.nodes.map((n) => `${n.host}:${n.port}`) } });
  });
  afterAll(async () => {
    await replicas?.stop();
    await cluster?.stop();
  });

  it('admits exactly the limit across 3 replicas', async () => {
    const outcome = await replicas.burst(TOTAL);
    report('cluster', outcome);
    expect(outcome.invalid).toEqual([]);
    expect(outcome.malformed429).toEqual([]);
    expect(outcome.reachedUpstream).toBeLessThanOrEqual(LIMIT);
    expect(outcome.fallbackEngaged).toBe(0);
    expect(outcome.reachedUpstream).toBe(LIMIT);
  });
});

describe('Sentinel, with a failover forced mid-burst', () => {
  let group: TestSentinelGroup;
  let replicas: Replicas;
  beforeAll(async () => {
    group = await startSentinelGroup();
    replicas = await startReplicas({ sentinel: { name: group.masterName, sentinels: group.sentinels.map((s) => `${s.host}:${s.port}`) } });
  });
  afterAll(async () => {
    await replicas?.stop();
    await group?.stop();
  });

  it('admits exactly the limit before the failover', async () => {
    const outcome = await replicas.burst(TOTAL);
    report('sentinel', outcome);
    expect(outcome.invalid).toEqual([]);
    expect(outcome.reachedUpstream).toBeLessThanOrEqual(LIMIT);
    if (outcome.fallbackEngaged === 0) expect(outcome.reachedUpstream).toBe(LIMIT);
  });

  it('answers every request with a success or a valid envelope while the master fails over', async () => {
    const before = await group.currentMaster();
    // A fresh window: the previous burst's counters are in the old master's data.
    await new Promise((resolve) => setTimeout(resolve, 10_500));
    // 600 requests over 6 s, the failover starting 1 s in.
    const outcome = await replicas.burst(TOTAL, {
      spreadMs: 6_000,
      during: async () => {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        await group.failover();
      },
    });
    report('sentinel failover', outcome);
    expect((await group.currentMaster()).port).not.toBe(before.port);
    expect(outcome.invalid).toEqual([]);
    expect(outcome.malformed429).toEqual([]);
    // With no fallback, Redis decided everything: never beyond the limit. With a fallback, each replica
    // admitted its share locally while Redis was away (the documented fail_open_local trade-off).
    if (outcome.fallbackEngaged === 0) expect(outcome.reachedUpstream).toBeLessThanOrEqual(LIMIT);
  });
});
