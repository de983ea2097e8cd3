import { calendarPeriod } from '../../src/ratelimit/calendar';
import { rateLimitExceeded, rateLimitHeaders } from '../../src/ratelimit/headers';
import type { LimitRequest, QuotaSpec } from '../../src/ratelimit/limiter';
import { MemoryLimiter } from '../../src/ratelimit/memory-limiter';
import { RedisLimiter } from '../../src/ratelimit/redis-limiter';
import { closeRedisClient, type RedisClient } from '../../src/redis/client';
import { poissonArrivals, seededRandom } from '../support/arrivals';
import { gatewayRedisClient, redisCli, startRedis, startRedisCluster, type TestRedis, type TestRedisCluster } from '../support/redis';

// The one rate-limit script with the kinds of issue #17 (account windows, calendar quotas, shadow
// windows), on a real Redis with the test-only "now": calendar boundaries in UTC, the same decisions
// as the memory limiter, shadow windows counting without refusing, and the keys a request touches.

let redis: TestRedis;
let client: RedisClient;
let limiter: RedisLimiter;
let run = 0;
const PREFIX = `lim${process.pid}:`;
/** A fresh key id per test, so tests share no counters. */
const subject = () => `key_t${process.pid}_${++run}`;

beforeAll(async () => {
  redis = await startRedis();
  client = await gatewayRedisClient(redis);
  limiter = new RedisLimiter(client, PREFIX);
});

afterAll(async () => {
  if (client) await closeRedisClient(client);
  await redis?.stop();
});

const at = (iso: string) => Date.parse(iso);
const quotaRequest = (id: string, quota: QuotaSpec, cost = 1): LimitRequest => ({ subject: id, windows: [], quota, cost });

describe('calendar quotas cross their UTC boundaries with the script clock', () => {
  // [period, last instant of a period, the boundary, what it shows]
  const boundaries: [QuotaSpec['period'], string, string, string][] = [
    ['day', '2026-12-31T23:59:59.999Z', '2027-01-01T00:00:00.000Z', 'Dec 31 → Jan 1'],
    ['month', '2026-12-31T23:59:59.999Z', '2027-01-01T00:00:00.000Z', 'December → January (new year)'],
    ['week', '2026-12-31T12:00:00.000Z', '2027-01-04T00:00:00.000Z', 'ISO week across the new year: Thursday → next Monday'],
    ['week', '2027-03-07T23:59:59.999Z', '2027-03-08T00:00:00.000Z', 'Sunday → Monday'],
    ['day', '2028-02-28T23:59:59.999Z', '2028-02-29T00:00:00.000Z', 'Feb 28 → Feb 29 (leap year)'],
    ['month', '2028-02-29T23:59:59.999Z', '2028-03-01T00:00:00.000Z', 'February of a leap year ends after the 29th'],
    ['month', '2027-02-28T23:59:59.999Z', '2027-03-01T00:00:00.000Z', 'February of a common year ends after the 28th'],
    ['month', '2100-02-28T23:59:59.999Z', '2100-03-01T00:00:00.000Z', '2100 is not a leap year'],
    ['month', '2000-02-28T23:59:59.999Z', '2000-02-29T00:00:00.000Z', '2000 is a leap year: Feb 29 is still February'],
  ];

  it.each(boundaries)('%s quota, %s → %s (%s)', async (period, lastIso, boundaryIso) => {
    const id = subject();
    const quota: QuotaSpec = { limit: 3, period };
    const last = at(lastIso);
    const boundary = at(boundaryIso);
    const expectedEnd = calendarPeriod(last, period).endMs;
    for (let i = 0; i < 3; i++) expect((await limiter.check(quotaRequest(id, quota), last)).allowed).toBe(true);
    const refused = await limiter.check(quotaRequest(id, quota), last);
    expect(refused.allowed).toBe(false);
    expect(refused.windows[0]).toMatchObject({ used: 3, blocking: true, resetMs: expectedEnd, calendar: period });
    const body = rateLimitExceeded(refused);
    expect(body.options.details).toEqual({ limit: 3, window: `calendar ${period}`, retry_after: Math.max(1, Math.ceil((Math.ceil(expectedEnd / 1000) * 1000 - last) / 1000)) });
    expect(rateLimitHeaders(refused, false)['x-ratelimit-reset']).toBe(String(Math.ceil(expectedEnd / 1000)));

    const next = await limiter.check(quotaRequest(id, quota), boundary);
    if (expectedEnd === boundary) {
      // a new period: the count starts again from zero, and resets at the next boundary
      expect(next.allowed).toBe(true);
      expect(next.windows[0]).toMatchObject({ used: 1, resetMs: calendarPeriod(boundary, period).endMs });
    } else {
      expect(next.allowed).toBe(false); // still the same period
    }
  });

  it('each counter expires an hour after its period ends (one key per period, named after its first day)', async () => {
    const id = subject();
    const now = at('2027-05-10T10:00:00Z');
    await limiter.check(quotaRequest(id, { limit: 10, period: 'month' }), now);
    const keys = (await redisCli(redis.port, '--scan', '--pattern', `${PREFIX}rl:{${id}}:*`)).trim().split('\n');
    const firstDay = Date.UTC(2027, 4, 1) / 86_400_000;
    expect(keys).toEqual([`${PREFIX}rl:{${id}}:quota:month:${firstDay}`]);
    const ttl = Number(await redisCli(redis.port, 'PTTL', keys[0]));
    const hour = 3_600_000; // kept an hour past June 1st (by the script's clock)
    expect(ttl).toBeLessThanOrEqual(Date.UTC(2027, 5, 1) - now + hour);
    expect(ttl).toBeGreaterThan(Date.UTC(2027, 5, 1) - now + hour - 5_000);
  });

  it('the script and calendar.ts agree on every period end for random instants from 1970 to 2400', async () => {
    const random = seededRandom(17);
    const id = subject();
    const span = Date.UTC(2400, 0, 1);
    for (let i = 0; i < 600; i++) {
      const now = Math.floor(random() * span);
      const period = (['day', 'week', 'month'] as const)[i % 3];
      const peek = await limiter.check(quotaRequest(id, { limit: 1, period }, 0), now);
      const expected = calendarPeriod(now, period);
      expect([new Date(now).toISOString(), period, peek.windows[0].resetMs]).toEqual([new Date(now).toISOString(), period, expected.endMs]);
      expect(expected.startMs).toBeLessThanOrEqual(now);
      expect(expected.endMs).toBeGreaterThan(now);
    }
  });

  it('weeks start on Monday 00:00 UTC and last 7 days', () => {
    for (const iso of ['2027-03-01T00:00:00Z', '2027-03-03T12:00:00Z', '2027-03-07T23:59:59.999Z']) {
      const week = calendarPeriod(at(iso), 'week');
      expect(new Date(week.startMs).toISOString()).toBe('2027-03-01T00:00:00.000Z'); // a Monday
      expect(week.endMs - week.startMs).toBe(7 * 86_400_000);
    }
  });
});

describe('one script call for windows, account windows, shadow windows and the quota', () => {
  it('gives the same decisions as the memory limiter (random sequence: two keys of one account, shadow window, quota crossing a day)', async () => {
    const random = seededRandom(1717);
    const memory = new MemoryLimiter();
    const account = `acct${process.pid}`;
    const ids = [subject(), subject()];
    const windows = [
      { name: '1000', limit: 6, windowMs: 1_000 },
      { name: 'users:10000', limit: 15, windowMs: 10_000, shadow: true },
      { name: '5000', limit: 12, windowMs: 5_000, perAccount: true },
    ];
    const quota: QuotaSpec = { limit: 400, period: 'day' };
    const start = at('2027-01-31T23:58:00Z');
    const times = poissonArrivals(random, 12 / 1_000, 4 * 60_000, start);
    let mismatches = 0;
    const outcomes = { allowed: 0, refused: 0, shadowOver: 0 };
    for (const [i, t] of times.entries()) {
      const request: LimitRequest = { subject: ids[i % 2], account, windows, quota, cost: i % 11 === 0 ? 0 : 1 };
      const [fromRedis, fromMemory] = [await limiter.check(request, t), memory.decide(request, t)];
      if (JSON.stringify(fromRedis) !== JSON.stringify(fromMemory)) mismatches++;
      if (fromRedis.allowed) outcomes.allowed++;
      else outcomes.refused++;
      if (fromRedis.allowed && fromRedis.windows[1].blocking) outcomes.shadowOver++;
    }
    await memory.close();
    expect(mismatches).toBe(0);
    expect(outcomes.allowed).toBeGreaterThan(200);
    expect(outcomes.refused).toBeGreaterThan(100);
    expect(outcomes.shadowOver).toBeGreaterThan(0);
  });

  it('a shadow window never refuses, counts every admitted request past its limit, and enforced windows still refuse', async () => {
    const id = subject();
    const windows = [
      { name: 'shadow', limit: 2, windowMs: 60_000, shadow: true },
      { name: 'enforced', limit: 5, windowMs: 60_000 },
    ];
    const t = at('2027-06-01T12:00:00Z');
    const decisions = [];
    for (let i = 0; i < 7; i++) decisions.push(await limiter.check({ subject: id, windows, cost: 1 }, t));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, true, true, false, false]);
    expect(decisions.map((d) => d.windows[0].used)).toEqual([1, 2, 3, 4, 5, 5, 5]); // counted like admitted ones
    expect(decisions.map((d) => d.windows[0].blocking)).toEqual([false, false, true, true, true, true, true]);
    // headers speak for the enforced window only
    expect(rateLimitHeaders(decisions[3], true)).toMatchObject({ 'x-ratelimit-limit': '5', 'x-ratelimit-remaining': '1', 'ratelimit-policy': '"1m";q=5;w=60' });
    expect(rateLimitExceeded(decisions[5]).options.details).toMatchObject({ limit: 5, window: '1 minute' });
    // only shadow windows: no headers at all, never refused
    const alone = await limiter.check({ subject: id, windows: [windows[0]], cost: 1 }, t);
    expect(alone.allowed).toBe(true);
    expect(rateLimitHeaders(alone, true)).toEqual({});
  });

  it('a shadow quota never refuses but counts; an enforced quota refuses atomically with the windows (nothing counted)', async () => {
    const id = subject();
    const t = at('2027-06-01T12:00:00Z');
    const window = { name: '60000', limit: 100, windowMs: 60_000 };
    for (let i = 0; i < 4; i++) expect((await limiter.check({ subject: id, windows: [window], quota: { limit: 2, period: 'month', shadow: true }, cost: 1 }, t)).allowed).toBe(true);
    const enforced = await limiter.check({ subject: id, windows: [window], quota: { limit: 4, period: 'month' }, cost: 1 }, t);
    expect(enforced.allowed).toBe(false);
    expect(enforced.windows.map((w) => w.used)).toEqual([4, 4]); // the refusal counted nowhere
  });

  it('a plain request touches only its window keys, named as before; an accounted one moves under the account tag', async () => {
    const plain = subject();
    await limiter.check({ subject: plain, windows: [{ name: '60000', limit: 5, windowMs: 60_000 }, { name: 'users:1000', limit: 5, windowMs: 1_000 }], cost: 1 });
    const plainKeys = (await redisCli(redis.port, '--scan', '--pattern', `${PREFIX}*${plain}*`)).trim().split('\n').sort();
    expect(plainKeys).toEqual([`${PREFIX}rl:{${plain}}:60000`, `${PREFIX}rl:{${plain}}:users:1000`]);

    const accounted = subject();
    const account = `acme${process.pid}`;
    await limiter.check({
      subject: accounted,
      account,
      windows: [{ name: '60000', limit: 5, windowMs: 60_000 }, { name: '60000', limit: 50, windowMs: 60_000, perAccount: true }],
      quota: { limit: 10, period: 'day' },
      cost: 1,
    });
    const accountKeys = (await redisCli(redis.port, '--scan', '--pattern', `${PREFIX}rl:{@${account}}:*`)).trim().split('\n').sort();
    expect(accountKeys).toHaveLength(3);
    expect(accountKeys).toEqual(
      expect.arrayContaining([`${PREFIX}rl:{@${account}}:${accounted}:60000`, `${PREFIX}rl:{@${account}}:account:60000`, expect.stringMatching(new RegExp(`^${PREFIX}rl:\\{@${account}\\}:${accounted}:quota:day:\\d+$`))]),
    );
  });
});

describe('Redis Cluster: every counter of one request in one slot', () => {
  let cluster: TestRedisCluster;
  let clusterClient: RedisClient;

  beforeAll(async () => {
    cluster = await startRedisCluster();
    clusterClient = await gatewayRedisClient({ nodes: cluster.nodes.map((n) => `${n.host}:${n.port}`) });
  }, 60_000);

  afterAll(async () => {
    if (clusterClient) await closeRedisClient(clusterClient);
    await cluster?.stop();
  });

  it('key, route, account windows and the quota of an accounted key: one call, one slot, exact counts', async () => {
    const clusterLimiter = new RedisLimiter(clusterClient, PREFIX);
    const account = `globex${process.pid}`;
    const ids = [subject(), subject()];
    const request = (id: string): LimitRequest => ({
      subject: id,
      account,
      windows: [
        { name: '60000', limit: 100, windowMs: 60_000 },
        { name: 'users:60000', limit: 100, windowMs: 60_000, shadow: true },
        { name: '60000', limit: 7, windowMs: 60_000, perAccount: true },
      ],
      quota: { limit: 1000, period: 'month' },
      cost: 1,
    });
    const decisions = await Promise.all(Array.from({ length: 20 }, (_, i) => clusterLimiter.check(request(ids[i % 2]))));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(7); // the account window, shared by both keys

    // Every key either request touched lives on one node, in one slot.
    const found: string[] = [];
    for (const node of cluster.nodes) found.push(...(await redisCli(node.port, 'KEYS', `${PREFIX}rl:*${account}*`)).split('\n').filter(Boolean));
    expect(found).toHaveLength(2 * 3 + 1); // per key: its window, its route window, its quota; + the account window
    const slots = new Set(await Promise.all(found.map((key) => redisCli(cluster.nodes[0].port, 'CLUSTER', 'KEYSLOT', key))));
    expect(slots.size).toBe(1);
  });
});
