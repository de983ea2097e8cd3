import Redis from 'ioredis';
import { suiteStack, baseConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send } from '../support/http';
import { redisCli, type TestRedis } from '../support/redis';
import { type TestUpstream } from '../support/upstream';

// Rate limiting through a real gateway on a real Redis: headers, the 429 envelope, route limits and
// costs, the IETF headers switch, and the failed-key guard.

const KEYS = {
  small: 'sk_test_rl_small_000000000000',
  multi: 'sk_test_rl_multi_000000000000',
  routed: 'sk_test_rl_routed_00000000000',
  other: 'sk_test_rl_other_000000000000',
};

let redis: TestRedis;
let upstream: TestUpstream;
let gateway: TestGateway;

const stack = suiteStack(({ redis, upstream }) =>
  baseConfig({
    store: { redis: { url: redis.url }, timeout_ms: 1000 },
    rate_limiting: { ietf_headers: true, failed_keys: { max_attempts: 3, per: '1m', block_for: '30s' } },
    trusted_proxies: ['127.0.0.1'],
    tiers: {
      small: { limits: [{ requests: 3, per: '1m' }], scopes: ['*'] },
      multi: { limits: [{ requests: 5, per: '1s' }, { requests: 8, per: '1h' }], scopes: ['*'] },
      routed: { limits: [{ requests: 100, per: '1m' }], scopes: ['*'] },
      other: { limits: [{ requests: 100, per: '1m' }], scopes: ['*'] },
    },
    upstreams: { app: { targets: [upstream.url] } },
    routes: [
      { name: 'search', match: { path_prefix: '/search' }, upstream: 'app', cost: 4, limits: { routed: [{ requests: 8, per: '1m' }] } },
      { name: 'all', match: { path_prefix: '/' }, upstream: 'app' },
    ],
    keys: [
      { name: 'small', tier: 'small', key: KEYS.small },
      { name: 'multi', tier: 'multi', key: KEYS.multi },
      { name: 'routed', tier: 'routed', key: KEYS.routed },
      { name: 'other', tier: 'other', key: KEYS.other },
    ],
  }));

beforeAll(() => {
  ({ redis, upstream, gateway } = stack);
});

const get = (path: string, key: string, from = '198.51.100.1') =>
  send(`${gateway.url}${path}`, { headers: { 'x-api-key': key, 'x-forwarded-for': from } });

describe('rate limits', () => {
  it('sends X-RateLimit-* on every limited response and the exact seed 429 once exhausted', async () => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await get('/ok', KEYS.small));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 429]);
    expect(answers.map((a) => a.headers['x-ratelimit-remaining'])).toEqual(['2', '1', '0', '0']);
    for (const a of answers) expect(a.headers['x-ratelimit-limit']).toBe('3');

    const refused = answers[3];
    const now = Date.now() / 1000;
    const reset = Number(refused.headers['x-ratelimit-reset']);
    const retryAfter = Number(refused.headers['retry-after']);
    expect(reset).toBeGreaterThan(now + 55);
    expect(reset).toBeLessThanOrEqual(Math.ceil(now) + 64);
    expect(Math.abs(retryAfter - (reset - now))).toBeLessThanOrEqual(2);
    expect(refused.json).toEqual({
      error: {
        code: 'rate_limit_exceeded',
        message: `API rate limit exceeded. Please wait ${retryAfter} seconds before retrying.`,
        details: { limit: 3, window: '1 minute', retry_after: retryAfter },
      },
    });
    expectEnvelope(refused, 429, 'rate_limit_exceeded');
    expect(upstream.requests.filter((r) => r.headers['x-consumer-tier'] === 'small')).toHaveLength(3);
  });

  it('describes the window with the fewest remaining, and on 429 the blocking window with the longest wait', async () => {
    const first = await get('/ok', KEYS.multi);
    // 1 s window: 4 left of 5; 1 h window: 7 left of 8 → the 1 s window is reported
    expect(first.headers['x-ratelimit-limit']).toBe('5');
    expect(first.headers['x-ratelimit-remaining']).toBe('4');
    expect(first.headers['ratelimit-policy']).toBe('"1s";q=5;w=1, "1h";q=8;w=3600');
    expect(first.headers.ratelimit).toMatch(/^"1s";r=4;t=\d+$/);
    for (let i = 0; i < 4; i++) await get('/ok', KEYS.multi);
    const burst = await get('/ok', KEYS.multi);
    expect(burst.status).toBe(429);
    expect(burst.json.error.details.window).toBe('1 second');
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const afterSecond = [];
    for (let i = 0; i < 4; i++) afterSecond.push(await get('/ok', KEYS.multi));
    // 5 + 3 = 8 used of the hour: the third one here is the last; the hour now blocks
    expect(afterSecond.map((a) => a.status)).toEqual([200, 200, 200, 429]);
    expect(afterSecond[3].json.error.details).toMatchObject({ limit: 8, window: '1 hour' });
    expect(Number(afterSecond[3].headers['retry-after'])).toBeGreaterThan(3000);
  });

  it('applies route limits per key and route, and charges the route cost against the tier', async () => {
    const one = await get('/search/x', KEYS.routed);
    const two = await get('/search/x', KEYS.routed);
    const three = await get('/search/x', KEYS.routed);
    expect([one.status, two.status, three.status]).toEqual([200, 200, 429]);
    expect(three.json.error.details).toMatchObject({ limit: 8, window: '1 minute' });
    // the tier window was charged cost 4 per search: 100 − 8 = 92 left after the next plain request (cost 1) → 91
    const plain = await get('/ok', KEYS.routed);
    expect(plain.status).toBe(200);
    expect(plain.headers['x-ratelimit-remaining']).toBe('91');
  });

  it('counts per key: one key exhausted leaves another untouched', async () => {
    expect((await get('/ok', KEYS.other)).headers['x-ratelimit-remaining']).toBe('99');
  });

  it('keeps all counters of a key under one hash tag in Redis', async () => {
    const keys = (await redisCli(redis.port, 'KEYS', 'sluice:rl:*')).split('\n').filter(Boolean);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) expect(key).toMatch(/^sluice:rl:\{key_[0-9a-f]+\}:/);
  });
});

describe('failed-key guard', () => {
  it('answers 401 until the address is over the limit, then 429 with Retry-After and the guard window; other addresses are unaffected', async () => {
    const attacker = '203.0.113.66';
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await get('/ok', `sk_live_guess_${i}_000000000000`, attacker)).status);
    expect(statuses).toEqual([401, 401, 401, 429]);

    const blocked = await get('/ok', KEYS.other, attacker); // even a valid key, from a blocked address
    const error = expectEnvelope(blocked, 429, 'too_many_failed_attempts');
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(25);
    expect(blocked.headers['x-ratelimit-limit']).toBe('3');
    expect(blocked.headers['x-ratelimit-remaining']).toBe('0');
    expect(error.details.retry_after).toBe(Number(blocked.headers['retry-after']));

    expect((await get('/ok', KEYS.other, '203.0.113.67')).status).toBe(200);
  });

  it('costs valid traffic no Redis call: one limiter script per request, nothing else', async () => {
    await get('/ok', KEYS.other); // cache the key
    // MONITOR rather than INFO commandstats: a replica's own beats (below) may fall inside the window.
    const watcher = new Redis(redis.url);
    const monitor = await watcher.monitor();
    const seen: string[][] = [];
    // Commands a script runs inside Redis (HGETALL, HINCRBY, ...) come from 'lua': not round trips.
    monitor.on('monitor', (_time: string, args: string[], source: string) => source !== 'lua' && seen.push(args));
    try {
      for (let i = 0; i < 20; i++) await get('/ok', KEYS.other, '192.0.2.10');
      await new Promise((resolve) => setTimeout(resolve, 200)); // the last commands' MONITOR lines
    } finally {
      monitor.disconnect();
      watcher.disconnect();
    }
    // About once a second, whatever the traffic: the replica heartbeat (a script on `replicas`, sent as
    // EVAL the first time on a connection) and the store health check (EXISTS on the marker); while
    // calls are outstanding, the deadline's PING pulse on its own connection (no key, no round trip of
    // a request).
    const background = ([command, ...args]: string[]) =>
      (['eval', 'evalsha'].includes(command.toLowerCase()) && args[2] === 'sluice:replicas') ||
      (command.toLowerCase() === 'exists' && args[0] === 'sluice:marker') ||
      command.toLowerCase() === 'ping';
    const requestPath = seen.filter((args) => !background(args));
    // One EVALSHA per request, on the key's counters: the guard's script would be a second one, a key
    // lookup a GET.
    expect(requestPath.map(([command]) => command.toLowerCase())).toEqual(Array(20).fill('evalsha'));
    for (const [, , , key] of requestPath) expect(key).toMatch(/^sluice:rl:\{key_[0-9a-f]+\}:/);
  });
});
