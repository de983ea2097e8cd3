import { benchOn, KEYS, readiness, REDIS_PASSWORD, type FaultBench } from '../support/fault-bench';
import { runCli } from '../support/gateway';
import { startRedis, startRedisCluster, startSentinelGroup, type TestRedis, type TestRedisCluster, type TestSentinelGroup } from '../support/redis';
import { failedChecks } from '../support/reliability';
import { send } from '../support/http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor } from '../support/wait';

// Redis faults under steady load through 3 replicas (fail_open_local): frozen, killed and restarted
// empty, a Sentinel failover, a Cluster master killed. Each case records a row of RELIABILITY.md.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


describe('standalone Redis', () => {
  let bench: FaultBench & { redis: TestRedis };
  beforeAll(async () => {
    bench = await benchOn('standalone', await startRedis({ destructive: true, password: REDIS_PASSWORD }), (redis) => ({ url: redis.url }));
  });
  afterAll(() => bench?.stop());

  it('Redis frozen (SIGSTOP) for 5 s, then SIGCONT', async () => {
    const row = await bench.runCase({
      name: 'Redis SIGSTOP 5 s',
      redisFault: true,
      fallbackCertain: true,
      inject: async () => {
        const start = Date.now();
        bench.redis.pause();
        await sleep(5000);
        bench.redis.resume();
        return { start, end: Date.now() };
      },
    });
    expect(failedChecks(row)).toBe('');
  });

  it('Redis killed and restarted empty: uncached keys 503 and not ready until keys import, never 401s', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-faults-'));
    const backup = path.join(dir, 'keys.jsonl');
    const exported = await runCli(['keys', 'export', '--config', bench.configFile]);
    fs.writeFileSync(backup, exported.stdout);
    const keyCount = exported.stdout.trim().split('\n').length - 1; // a header line, then one line per key

    const row = await bench.runCase({
      name: 'Redis killed, restarted empty, keys import',
      redisFault: true,
      fallbackCertain: true,
      faultCodes: ['service_unavailable'],
      inject: async ({ gateways }) => {
        const start = Date.now();
        await bench.redis.kill();
        await sleep(2000);
        await bench.redis.restart();
        // Every replica notices the lost marker (health polls about once a second).
        let notReady: Awaited<ReturnType<typeof readiness>>[] = [];
        await waitFor(
          async () => (notReady = await Promise.all(gateways.map(readiness))).every((s) => s.status === 503 && s.reason === 'marker_missing'),
          10_000,
          { what: 'every replica to report marker_missing' },
        );
        const freshBefore = await Promise.all(gateways.map((g) => send(`${g.url}/fresh/ok`, { headers: { 'x-api-key': KEYS.fresh } })));
        const restored = await runCli(['keys', 'import', '--config', bench.configFile, backup]);
        const importedAt = Date.now();
        const ready = await waitFor(async () => (await Promise.all(gateways.map(readiness))).every((s) => s.status === 200), 10_000, { what: 'every replica ready again' }).then(
          () => Date.now(),
          () => NaN,
        );
        const freshAfter = await Promise.all(gateways.map((g) => send(`${g.url}/fresh/ok`, { headers: { 'x-api-key': KEYS.fresh } })));
        return {
          start,
          end: Date.now(),
          figures: {
            'import said': restored.stdout.trim(),
            'ready again after import ms': ready - importedAt,
          },
          checks: [
            { name: 'every replica not ready (marker_missing) after the empty restart', pass: notReady.length === 3 },
            {
              name: 'an uncached valid key gets 503 service_unavailable before the import (not 401)',
              pass: freshBefore.every((r) => r.status === 503 && (r.json as any)?.error?.code === 'service_unavailable'),
              detail: freshBefore.map((r) => r.status).join(', '),
            },
            {
              name: '`sluice keys import` restores every key of the export',
              pass: restored.code === 0 && restored.stdout.includes(`Imported ${keyCount} of ${keyCount} keys.`),
              detail: restored.stderr.trim() || undefined,
            },
            { name: 'every replica ready again after the import', pass: Number.isFinite(ready) },
            { name: 'the uncached key works after the import', pass: freshAfter.every((r) => r.status === 200), detail: freshAfter.map((r) => r.status).join(', ') },
          ],
        };
      },
    });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(failedChecks(row)).toBe('');
  });
});

describe('Sentinel', () => {
  let bench: FaultBench & { redis: TestSentinelGroup };
  beforeAll(async () => {
    bench = await benchOn('Sentinel', await startSentinelGroup(), (group) => ({
      sentinel: { name: group.masterName, sentinels: group.sentinels.map((s) => `${s.host}:${s.port}`) },
    }));
  });
  afterAll(() => bench?.stop());

  it('Sentinel failover under load', async () => {
    const row = await bench.runCase({
      name: 'Sentinel failover',
      redisFault: true,
      inject: async () => {
        const start = Date.now();
        const promoted = await bench.redis.failover();
        return { start, end: Date.now(), figures: { 'promoted': `${promoted.host}:${promoted.port}` } };
      },
    });
    expect(failedChecks(row)).toBe('');
  });
});

describe('Redis Cluster (3 masters, a replica each)', () => {
  let bench: FaultBench & { redis: TestRedisCluster };
  beforeAll(async () => {
    bench = await benchOn('Cluster', await startRedisCluster({ withReplicas: true }), (cluster) => ({
      cluster: { nodes: cluster.nodes.map((n) => `${n.host}:${n.port}`) },
    }));
  });
  afterAll(() => bench?.stop());

  it('one master killed, its replica promoted', async () => {
    const row = await bench.runCase({
      name: 'Cluster master SIGKILL',
      redisFault: true,
      inject: async () => {
        const start = Date.now();
        await bench.redis.killMaster(0);
        return { start, end: Date.now() };
      },
    });
    expect(failedChecks(row)).toBe('');
  });
});
