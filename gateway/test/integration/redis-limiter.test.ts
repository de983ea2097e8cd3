import { MemoryLimiter } from '../../src/ratelimit/memory-limiter';
import { RedisLimiter } from '../../src/ratelimit/redis-limiter';
import { closeRedisClient, type RedisClient } from '../../src/redis/client';
import { bucketWidth } from '../../src/ratelimit/sliding-window';
import type { LimitRequest } from '../../src/ratelimit/limiter';
import { maxInAnyWindow, poissonArrivals, seededRandom } from '../support/arrivals';
import { gatewayRedisClient, redisCli, startRedis, type TestRedis } from '../support/redis';

// The Lua script against the TypeScript algorithm: the same sequence of requests (with explicit
// times) must get the same decisions, headers' inputs included, from Redis and from memory.

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
let redis: TestRedis;
let client: RedisClient;
let limiter: RedisLimiter;

beforeAll(async () => {
  redis = await startRedis();
  client = await gatewayRedisClient(redis);
  limiter = new RedisLimiter(client, `t${process.pid}:`);
});

afterAll(async () => {
  if (client) await closeRedisClient(client);
  await redis?.stop();
});

it('gives the same decisions as the memory limiter for the same random sequence (several windows, costs)', async () => {
  const random = seededRandom(2026);
  const memory = new MemoryLimiter();
  const windows = [
    { name: 'a:1000', limit: 10, windowMs: 1_000 },
    { name: 'a:60000', limit: 120, windowMs: 60_000 },
    { name: 'r:users:10000', limit: 30, windowMs: 10_000 },
  ];
  const times = poissonArrivals(random, 25 / 1_000, 3 * 60_000, T0);
  let mismatches = 0;
  let admitted = 0;
  for (const [i, t] of times.entries()) {
    // costs 1 and 3, and now and then a zero-cost look that must count nothing
    const request: LimitRequest = { subject: `equiv-${process.pid}`, windows, cost: i % 7 === 0 ? 0 : 1 + (i % 3 === 0 ? 2 : 0) };
    const [fromRedis, fromMemory] = [await limiter.check(request, t), memory.decide(request, t)];
    if (JSON.stringify(fromRedis) !== JSON.stringify(fromMemory)) mismatches++;
    if (fromRedis.allowed) admitted++;
  }
  await memory.close();
  expect(times.length).toBeGreaterThan(3000);
  expect(admitted).toBeGreaterThan(150);
  expect(admitted).toBeLessThan(times.length);
  expect(mismatches).toBe(0);
});

it('never admits more than N in any rolling window (Redis, random arrivals)', async () => {
  const random = seededRandom(7);
  const limit = 50;
  const windowMs = 10_000;
  const times = poissonArrivals(random, (3 * limit) / windowMs, 30 * windowMs, T0);
  const admitted: number[] = [];
  for (const t of times) {
    const decision = await limiter.check({ subject: `prop-${process.pid}`, windows: [{ name: 'w', limit, windowMs }], cost: 1 }, t);
    if (decision.allowed) admitted.push(t);
  }
  expect(maxInAnyWindow(admitted, windowMs)).toBe(limit);
});

it('uses Redis TIME by default, keeps one hash per window with a TTL, and shares the key id hash tag', async () => {
  const subject = `time-${process.pid}`;
  const before = Date.now();
  const decision = await limiter.check({ subject, windows: [{ name: '60000', limit: 5, windowMs: 60_000 }], cost: 1 });
  expect(decision.nowMs).toBeGreaterThanOrEqual(before - 1000);
  expect(decision.nowMs).toBeLessThanOrEqual(Date.now() + 1000);
  const key = `t${process.pid}:rl:{${subject}}:60000`;
  expect(await redisCli(redis.port, 'HLEN', key)).toBe('1');
  const ttl = Number(await redisCli(redis.port, 'PTTL', key));
  expect(ttl).toBeGreaterThan(60_000);
  expect(ttl).toBeLessThanOrEqual(60_000 + bucketWidth(60_000));
});

it('is one EVALSHA per check, whatever the number of windows', async () => {
  await limiter.check({ subject: 'warm', windows: [{ name: 'x', limit: 5, windowMs: 1000 }], cost: 1 });
  await redisCli(redis.port, 'CONFIG', 'RESETSTAT');
  const windows = [1, 2, 3, 4].map((n) => ({ name: `w${n}`, limit: 100, windowMs: n * 1000 }));
  for (let i = 0; i < 10; i++) await limiter.check({ subject: `count-${process.pid}`, windows, cost: 1 });
  const stats = await redisCli(redis.port, 'INFO', 'commandstats');
  const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
  expect(calls('evalsha')).toBe(10);
  expect(calls('eval')).toBe(0);
});

it('sends the script itself only when Redis does not know it (a restart, SCRIPT FLUSH), then goes by SHA again', async () => {
  const request = { subject: `flush-${process.pid}`, windows: [{ name: 'x', limit: 3, windowMs: 60_000 }], cost: 1 };
  await limiter.check(request);
  await redisCli(redis.port, 'SCRIPT', 'FLUSH');
  await redisCli(redis.port, 'CONFIG', 'RESETSTAT');
  const decisions = [];
  for (let i = 0; i < 3; i++) decisions.push(await limiter.check(request));
  expect(decisions.map((d) => d.allowed)).toEqual([true, true, false]); // counted across the flush: 1 + 2 of 3
  const stats = await redisCli(redis.port, 'INFO', 'commandstats');
  const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
  expect(calls('eval')).toBe(1); // after the NOSCRIPT of the first EVALSHA
  expect(calls('evalsha')).toBe(3);
});
