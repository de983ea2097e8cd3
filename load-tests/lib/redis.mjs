// The harness's own redis-server (never the shared one on 6379), and what we read from it:
// command counts (INFO commandstats), memory per key (MEMORY USAGE), and fast seeding of many keys.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Redis from 'ioredis';
import { CORE, freePort, waitFor } from './procs.mjs';
import { ROOT, tempDir } from './servers.mjs';

const require = createRequire(import.meta.url);
export const PREFIX = 'sluice:';

export function redisVersion() {
  const out = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout ?? '';
  return /v=(\S+)/.exec(out)?.[1] ?? 'unknown';
}

/** A throwaway redis-server on a free port, pinned with the helpers, no persistence. */
export async function startRedis(group) {
  const port = await freePort();
  const dir = tempDir('redis');
  const p = await group.start('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    core: CORE.helpers,
  });
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
  client.on('error', () => {}); // it dies with the group; errors after that are expected
  await waitFor('redis-server', async () => {
    if (client.status !== 'ready') await client.connect();
    return (await client.ping()) === 'PONG';
  });
  group.onStop(() => client.disconnect());
  return { ...p, port, url: `redis://127.0.0.1:${port}`, prefix: PREFIX, client };
}

/** Calls per command so far. */
export async function commandStats(redis) {
  const text = await redis.client.info('commandstats');
  return Object.fromEntries([...text.matchAll(/cmdstat_([\w|]+):calls=(\d+)/g)].map((m) => [m[1], Number(m[2])]));
}

// Ours (the harness reads stats and memory); never counted against the gateway.
const HARNESS_COMMANDS = new Set(['info', 'memory', 'scan', 'ping', 'client', 'client|setname', 'select', 'hello', 'command', 'config', 'dbsize']);

export function statsDelta(before, after) {
  const delta = {};
  for (const [name, calls] of Object.entries(after)) {
    if (HARNESS_COMMANDS.has(name)) continue;
    const d = calls - (before[name] ?? 0);
    if (d > 0) delta[name] = d;
  }
  return delta;
}

// Commands the gateway's Lua scripts run inside Redis (SLIDING_WINDOW; TIME…PEXPIRE, INCRBY of a
// calendar quota; the replica heartbeat adds ZADD/ZREMRANGEBYSCORE/ZCARD every 5 s). They cost no
// round trip. HGETALL and GET are also sent directly (a key record and the secret index, on a cache
// miss), so they are split using the number of windows and of quota counters the script reads.
const IN_SCRIPT = new Set(['time', 'hgetall', 'hdel', 'hincrby', 'incrby', 'pexpire', 'zadd', 'zremrangebyscore', 'zcard']);

/**
 * Per request: round trips (commands sent by the gateway: EVALSHA, and GET/HGETALL of key lookups)
 * and in-script commands, from a commandstats delta over `requests` requests whose rate limit checks
 * `windows` windows (HGETALL each) and `quotas` calendar quotas (GET each) each.
 */
export function perRequest(delta, requests, windows, quotas = 0) {
  const evalsha = (delta.evalsha ?? 0) + (delta.eval ?? 0);
  const direct = {};
  const inScript = {};
  for (const [name, calls] of Object.entries(delta)) {
    const perScript = name === 'hgetall' ? windows : name === 'get' ? quotas : undefined;
    if (perScript !== undefined) {
      const scripted = Math.min(calls, evalsha * perScript);
      if (scripted > 0) inScript[name] = scripted / requests;
      if (calls - scripted > 0) direct[name] = (calls - scripted) / requests;
    } else if (IN_SCRIPT.has(name)) inScript[name] = calls / requests;
    else direct[name] = calls / requests;
  }
  const roundTrips = Object.values(direct).reduce((a, b) => a + b, 0);
  return { roundTrips, direct, inScript };
}

export const fmtCommands = (map) =>
  Object.entries(map)
    .sort((a, b) => b[1] - a[1])
    .map(([name, v]) => `${name.toUpperCase()} ${v > 0 && v < 0.001 ? '<0.001' : v.toFixed(3)}`)
    .join(', ') || '—';

/**
 * Writes `count` keys of `tier` into the store through the gateway's own RedisKeyStore.put (the
 * same records, hashes and schema as `sluice keys create/import`), many at once: node-redis writes
 * each tick's commands together, so 100k keys take seconds instead of a sequential import's minutes.
 * Returns the file of plaintext keys (one per line, for the load tool) and the key ids.
 */
export async function seedKeys(redis, { count, tier, concurrency = 2000 }) {
  const { RedisKeyStore } = require(path.join(ROOT, 'dist/keys/redis-store.js'));
  const { newRecord } = require(path.join(ROOT, 'dist/keys/records.js'));
  const { createRedisClient, closeRedisClient, waitUntilReady } = require(path.join(ROOT, 'dist/redis/client.js'));
  const client = createRedisClient({ url: `redis://127.0.0.1:${redis.port}`, key_prefix: redis.prefix }, { timeoutMs: 5000 });
  client.on('error', () => undefined);
  await waitUntilReady(client, 10_000);
  const store = new RedisKeyStore(client, redis.prefix);
  const secrets = new Array(count);
  const ids = new Array(count);
  try {
    for (let start = 0; start < count; start += concurrency) {
      const batch = [];
      for (let i = start; i < Math.min(count, start + concurrency); i++) {
        const { record, key } = newRecord({ name: `bench-${i}`, tier, key: `sk_many_${String(i).padStart(7, '0')}_${Math.random().toString(36).slice(2, 10)}` });
        secrets[i] = key;
        ids[i] = record.id;
        batch.push(store.put(record));
      }
      await Promise.all(batch);
    }
  } finally {
    await closeRedisClient(client);
  }
  const file = path.join(tempDir('keys'), 'keys.txt');
  writeFileSync(file, secrets.join('\n') + '\n');
  return { file, ids };
}

/** Bytes Redis holds for `key` (nested values counted exactly: SAMPLES 0). */
export async function memoryUsage(redis, key) {
  return Number((await redis.client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
}

export async function usedMemory(redis) {
  return Number(/used_memory:(\d+)/.exec(await redis.client.info('memory'))[1]);
}
