import { writeFileSync } from 'node:fs';
import Redis from 'ioredis';
import WebSocket from 'ws';
import { stringify } from 'yaml';
import { Agent } from 'undici';
import { baseConfig, removeConfig, runCli, startGateway, suiteStack, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send, type SimpleResponse } from '../support/http';
import { changed, scrape } from '../support/metrics';
import { redisCli, startRedis, startRedisCluster, type TestRedis, type TestRedisCluster } from '../support/redis';
import { metricValue } from '../support/scenarios';
import { startUpstream, type TestUpstream } from '../support/upstream';
import { waitFor } from '../support/wait';

// Public routes (auth: none) and routes a key is optional on (auth: optional): callers without a key
// are limited by anonymous_tier per client address, through real gateways on a real Redis.

const KEYS = {
  pro: 'sk_test_anon_pro_00000000000000', // tier pro: 3 per minute, every scope
  narrow: 'sk_test_anon_narrow_0000000000', // tier narrow: no search:read
};
const PUBLIC_LIMIT = 5;
const PRO_LIMIT = 3;
const FAILED_KEY_ATTEMPTS = 3;

const stack = suiteStack(({ redis, upstream }) =>
  baseConfig({
    store: { redis: { url: redis.url }, timeout_ms: 1000 },
    rate_limiting: { failed_keys: { max_attempts: FAILED_KEY_ATTEMPTS, per: '1m', block_for: '1m' } },
    trusted_proxies: ['127.0.0.1'], // so each test can call from addresses of its own (X-Forwarded-For)
    anonymous_tier: 'public',
    tiers: {
      public: { limits: [{ requests: PUBLIC_LIMIT, per: '1m' }] },
      pro: { limits: [{ requests: PRO_LIMIT, per: '1m' }], scopes: ['*'] },
      narrow: { limits: [{ requests: 100, per: '1m' }], scopes: ['other:read'] },
    },
    upstreams: {
      app: { targets: [upstream.url] },
      single: { targets: [upstream.url], connections: 4, max_connections_per_key: 1 },
    },
    routes: [
      { name: 'docs', match: { path_prefix: '/docs' }, upstream: 'app', auth: 'none' },
      { name: 'single', match: { path_prefix: '/single' }, upstream: 'single', auth: 'none' },
      { name: 'strict', match: { path_prefix: '/strict' }, upstream: 'app', auth: 'none', limits: { public: [{ requests: 2, per: '1m' }] } },
      { name: 'search', match: { path_prefix: '/search' }, upstream: 'app', auth: 'optional', scopes: ['search:read'] },
      { name: 'private', match: { path_prefix: '/' }, upstream: 'app' },
    ],
    keys: [
      { name: 'pro', tier: 'pro', key: KEYS.pro },
      { name: 'narrow', tier: 'narrow', key: KEYS.narrow },
    ],
  }),
);

let redis: TestRedis;
let upstream: TestUpstream;
let gateway: TestGateway;
beforeAll(() => {
  ({ redis, upstream, gateway } = stack);
});

const burstAgent = new Agent({ connections: 200, pipelining: 1 });
afterAll(() => burstAgent.close());

/** A request from `client` (told by the trusted loopback peer in X-Forwarded-For). */
function from(client: string, path: string, headers: Record<string, string> = {}): Promise<SimpleResponse> {
  return send(`${gateway.url}${path}`, { headers: { 'x-forwarded-for': client, ...headers }, dispatcher: burstAgent });
}

/** What the upstream received from `client` (its X-Forwarded-For is the client's, then the gateway's peer). */
function receivedFrom(client: string) {
  return upstream.requests.filter((r) => String(r.headers['x-forwarded-for']).startsWith(`${client}, `));
}

async function statusesOf(requests: Promise<SimpleResponse>[]): Promise<Record<number, number>> {
  const counts: Record<number, number> = {};
  for (const res of await Promise.all(requests)) counts[res.status] = (counts[res.status] ?? 0) + 1;
  return counts;
}

/** Every 429 is the seed's rate_limit_exceeded for `limit` per minute, with its headers. */
function expectExact429(res: SimpleResponse, limit: number) {
  const error = expectEnvelope(res, 429, 'rate_limit_exceeded');
  const retryAfter = Number(res.headers['retry-after']);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(65); // a window's end rounds up to its last bucket
  expect(error).toEqual({
    code: 'rate_limit_exceeded',
    message: `API rate limit exceeded. Please wait ${retryAfter} seconds before retrying.`,
    details: { limit, window: '1 minute', retry_after: retryAfter },
  });
  expect(res.headers['x-ratelimit-limit']).toBe(String(limit));
  expect(res.headers['x-ratelimit-remaining']).toBe('0');
  expect(Number(res.headers['x-ratelimit-reset'])).toBeGreaterThan(Date.now() / 1000);
}

async function accessLogLine(requestId: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 40; i++) {
    const line = gateway.output.find((l) => l.includes(`"request_id":"${requestId}"`) && l.includes('"msg":"request"'));
    if (line) return JSON.parse(line);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no access-log line for ${requestId}`);
}

describe('auth: none', () => {
  it('serves a caller without a key in the anonymous tier: X-Consumer-Tier, no X-Consumer-Id, rate-limit headers, access log', async () => {
    const client = '198.51.100.1';
    const res = await from(client, '/docs/headers', { 'x-request-id': 'anon-docs-1' });
    expect(res.status).toBe(200);
    const seen = res.json.headers;
    expect(seen['x-consumer-tier']).toBe('public');
    expect(seen).not.toHaveProperty('x-consumer-id');
    expect(seen).not.toHaveProperty('x-api-key');
    expect(res.headers['x-ratelimit-limit']).toBe(String(PUBLIC_LIMIT));
    expect(res.headers['x-ratelimit-remaining']).toBe(String(PUBLIC_LIMIT - 1));
    expect(Number(res.headers['x-ratelimit-reset'])).toBeGreaterThan(Date.now() / 1000);

    const line = await accessLogLine('anon-docs-1');
    expect(line).toMatchObject({ route: 'docs', status: 200, tier: 'public', client });
    expect(line).not.toHaveProperty('consumer_id');
  });

  it(`admits exactly ${PUBLIC_LIMIT} of a concurrent burst from one address; every refusal is the exact 429`, async () => {
    const client = '198.51.100.2';
    const answers = await Promise.all(Array.from({ length: PUBLIC_LIMIT + 25 }, () => from(client, '/docs/ok')));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(PUBLIC_LIMIT);
    const refused = answers.filter((a) => a.status !== 200);
    expect(refused).toHaveLength(25);
    for (const res of refused) expectExact429(res, PUBLIC_LIMIT);
    expect(receivedFrom(client)).toHaveLength(PUBLIC_LIMIT);
  });

  it('ignores a key sent (bad or good): never looked up, never forwarded, the caller stays anonymous', async () => {
    const client = '198.51.100.3';
    const bad = await from(client, '/docs/headers', { 'x-api-key': 'sk_live_not_a_real_key_0000000' });
    expect(bad.status).toBe(200);
    expect(bad.json.headers).not.toHaveProperty('x-api-key');
    expect(bad.json.headers['x-consumer-tier']).toBe('public');
    expect(bad.json.headers).not.toHaveProperty('x-consumer-id');

    const good = await from(client, '/docs/headers', { 'x-api-key': KEYS.pro });
    expect(good.status).toBe(200);
    expect(good.json.headers).not.toHaveProperty('x-api-key');
    expect(good.json.headers['x-consumer-tier']).toBe('public'); // not pro: the key is not even read
    expect(good.json.headers).not.toHaveProperty('x-consumer-id');
    expect(good.headers['x-ratelimit-limit']).toBe(String(PUBLIC_LIMIT));
    expect(good.headers['x-ratelimit-remaining']).toBe(String(PUBLIC_LIMIT - 2)); // the address's counter

    // Not looked up: the only Redis command of these requests is the limiter's script, on the address's counter.
    const watcher = new Redis(redis.url);
    const monitor = await watcher.monitor();
    const seen: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => source !== 'lua' && seen.push(args));
    try {
      for (const key of ['sk_live_never_looked_up_000001', KEYS.narrow]) {
        expect((await from('198.51.100.33', '/docs/ok', { 'x-api-key': key })).status).toBe(200);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      monitor.disconnect();
      watcher.disconnect();
    }
    const background = ([command, ...args]: string[]) =>
      (['eval', 'evalsha'].includes(command.toLowerCase()) && args[2] === 'sluice:replicas') ||
      (command.toLowerCase() === 'exists' && args[0] === 'sluice:marker') ||
      command.toLowerCase() === 'ping';
    const requestPath = seen.filter((args) => !background(args));
    expect(requestPath.map(([command]) => command.toLowerCase())).toEqual(['evalsha', 'evalsha']);
    for (const [, , , key] of requestPath) expect(key).toBe('sluice:rl:{anon:198.51.100.33}:60000');
  });

  it('never counts a key sent there in the failed-key guard', async () => {
    const client = '198.51.100.4';
    for (let i = 0; i < FAILED_KEY_ATTEMPTS + 1; i++) {
      expect((await from(client, '/docs/ok', { 'x-api-key': `sk_live_guess_${i}_00000000000000` })).status).toBe(200);
    }
    // Had those counted, this address would be blocked (429) by now; a bad key on a keyed route is its first failure.
    expectEnvelope(await from(client, '/private/ok', { 'x-api-key': 'sk_live_guess_x_00000000000000' }), 401, 'invalid_api_key');
  });

  it('strips identities a client forges: X-Consumer-Id and X-Consumer-Tier never reach the upstream from the client', async () => {
    const res = await from('198.51.100.5', '/docs/headers', {
      'x-consumer-id': 'key_forged',
      'x-consumer-tier': 'pro',
    });
    expect(res.status).toBe(200);
    expect(res.json.headers).not.toHaveProperty('x-consumer-id');
    expect(res.json.headers['x-consumer-tier']).toBe('public');
    // A keyed caller's forgeries are replaced by the gateway's own values too.
    const keyed = await from('198.51.100.5', '/private/headers', { 'x-api-key': KEYS.narrow, 'x-consumer-id': 'key_forged', 'x-consumer-tier': 'public' });
    expect(keyed.status).toBe(200);
    expect(keyed.json.headers['x-consumer-id']).toMatch(/^key_[0-9a-f]+$/);
    expect(keyed.json.headers['x-consumer-tier']).toBe('narrow');
  });

  it('counts each client address on its own', async () => {
    const [a, b] = ['198.51.100.6', '198.51.100.7'];
    for (let i = 0; i < PUBLIC_LIMIT; i++) expect((await from(a, '/docs/ok')).status).toBe(200);
    expectExact429(await from(a, '/docs/ok'), PUBLIC_LIMIT);
    const other = await from(b, '/docs/ok');
    expect(other.status).toBe(200);
    expect(other.headers['x-ratelimit-remaining']).toBe(String(PUBLIC_LIMIT - 1));
  });

  it('counts IPv6 callers per /64: addresses of one /64 share a counter, another /64 has its own', async () => {
    const oneSlash64 = ['2001:db8:a:1::1', '2001:db8:a:1:ffff:ffff:ffff:fffe', '2001:DB8:A:1:0:0:0:7', '2001:db8:a:1:1234::9', '[2001:db8:a:1::5]:51000'];
    const statuses = await statusesOf(Array.from({ length: 3 * oneSlash64.length }, (_, i) => from(oneSlash64[i % oneSlash64.length], '/docs/ok')));
    expect(statuses).toEqual({ 200: PUBLIC_LIMIT, 429: 3 * oneSlash64.length - PUBLIC_LIMIT });

    for (const neighbour of ['2001:db8:a:2::1', '2001:db8:b:1::1', '2001:db9:a:1::1']) {
      const res = await from(neighbour, '/docs/ok');
      expect(res.status).toBe(200);
      expect(res.headers['x-ratelimit-remaining']).toBe(String(PUBLIC_LIMIT - 1));
    }
  });

  it('counts an IPv4-mapped IPv6 caller as its IPv4 address', async () => {
    const spellings = ['198.51.100.8', '::ffff:198.51.100.8', '::ffff:c633:6408'];
    const statuses = await statusesOf(Array.from({ length: 9 }, (_, i) => from(spellings[i % spellings.length], '/docs/ok')));
    expect(statuses).toEqual({ 200: PUBLIC_LIMIT, 429: 9 - PUBLIC_LIMIT });
  });

  it("applies the route's windows for the anonymous tier too", async () => {
    const client = '198.51.100.9';
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await from(client, '/strict/ok'));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429]);
    expectExact429(answers[2], 2);
    // the tier's window counted them too: 5 − 2 left for the address on another route
    expect((await from(client, '/docs/ok')).headers['x-ratelimit-remaining']).toBe(String(PUBLIC_LIMIT - 3));
  });

  it('keeps every counter of an anonymous caller under one hash tag, anon:<address>, apart from key ids', async () => {
    const keys = (await redisCli(redis.port, 'KEYS', 'sluice:rl:*')).split('\n').filter(Boolean);
    const anonymous = keys.filter((k) => k.includes('anon:'));
    expect(anonymous.length).toBeGreaterThan(0);
    for (const key of anonymous) expect(key).toMatch(/^sluice:rl:\{anon:[0-9a-f.:/]+\}:(strict:)?60000$/);
    expect(keys).toContain('sluice:rl:{anon:2001:db8:a:1::/64}:60000');
    expect(keys).toContain('sluice:rl:{anon:198.51.100.8}:60000');
    expect(keys.filter((k) => !k.includes('anon:')).every((k) => /^sluice:rl:\{key_[0-9a-f]+\}:/.test(k))).toBe(true);
  });
});

describe("auth: none, an upstream's per-key connection share", () => {
  it('is held per client address: one address waits for its own connection, another does not', async () => {
    upstream.reset();
    const [a, b] = ['198.51.100.60', '198.51.100.61'];
    const slow = (client: string) => from(client, '/single/slow?ms=1500');
    const sameAddress = [slow(a), slow(a)];
    await waitFor(() => upstream.activeResponses() >= 1, 2000);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(upstream.activeResponses()).toBe(1); // the second request of `a` waits for the first's connection
    const otherAddress = slow(b);
    await waitFor(() => upstream.activeResponses() === 2, 2000, { what: 'a second address gets a connection of its own' });
    expect((await Promise.all([...sameAddress, otherAddress])).map((r) => r.status)).toEqual([200, 200, 200]);
  });
});

describe('auth: none, WebSocket upgrades', () => {
  it('forwards an anonymous upgrade with X-Consumer-Tier and no key or X-Consumer-Id, counted per address', async () => {
    const client = '198.51.100.50';
    const opened = await new Promise<{ ws: WebSocket; first: any }>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/docs/ws`, {
        headers: { 'x-forwarded-for': client, 'x-api-key': 'sk_live_ignored_0000000000000', 'x-consumer-id': 'key_forged' },
      });
      ws.once('message', (data) => resolve({ ws, first: JSON.parse(data.toString()) }));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
      ws.once('error', reject);
    });
    opened.ws.close();
    expect(opened.first.headers['x-consumer-tier']).toBe('public');
    expect(opened.first.headers).not.toHaveProperty('x-consumer-id');
    expect(opened.first.headers).not.toHaveProperty('x-api-key');
    expect((await from(client, '/docs/ok')).headers['x-ratelimit-remaining']).toBe(String(PUBLIC_LIMIT - 2));
  });
});

describe('auth: optional', () => {
  it('without a key: the anonymous tier, per address, no scope check', async () => {
    const client = '198.51.100.20';
    const res = await from(client, '/search/headers');
    expect(res.status).toBe(200);
    expect(res.json.headers['x-consumer-tier']).toBe('public');
    expect(res.json.headers).not.toHaveProperty('x-consumer-id');
    expect(res.headers['x-ratelimit-limit']).toBe(String(PUBLIC_LIMIT));
    const emptyKey = await from(client, '/search/ok', { 'x-api-key': '' }); // an empty header is no key
    expect(emptyKey.status).toBe(200);
    const statuses = await statusesOf(Array.from({ length: 10 }, () => from(client, '/search/ok')));
    expect(statuses).toEqual({ 200: PUBLIC_LIMIT - 2, 429: 10 - (PUBLIC_LIMIT - 2) });
  });

  it("with a good key: the key's tier, its limits and the route's scopes apply", async () => {
    const client = '198.51.100.21';
    const answers = [];
    for (let i = 0; i < PRO_LIMIT + 1; i++) answers.push(await from(client, '/search/headers', { 'x-api-key': KEYS.pro }));
    expect(answers.map((a) => a.status)).toEqual([...Array(PRO_LIMIT).fill(200), 429]);
    expect(answers[0].json.headers['x-consumer-tier']).toBe('pro');
    expect(answers[0].json.headers['x-consumer-id']).toMatch(/^key_[0-9a-f]+$/);
    expect(answers[0].json.headers).not.toHaveProperty('x-api-key');
    expect(answers[0].headers['x-ratelimit-limit']).toBe(String(PRO_LIMIT));
    expectExact429(answers[PRO_LIMIT], PRO_LIMIT);
    // the address's anonymous budget is untouched by the key's requests
    expect((await from(client, '/search/ok')).headers['x-ratelimit-remaining']).toBe(String(PUBLIC_LIMIT - 1));

    const narrow = await from(client, '/search/ok', { 'x-api-key': KEYS.narrow });
    const error = expectEnvelope(narrow, 403, 'forbidden');
    expect(error.details).toEqual({ required_scopes: 'search:read' });
  });

  it('with a bad key: 401, counted by the failed-key guard (then 429 for the address), never served anonymously', async () => {
    const client = '198.51.100.22';
    const statuses = [];
    for (let i = 0; i < FAILED_KEY_ATTEMPTS + 1; i++) {
      statuses.push((await from(client, '/search/ok', { 'x-api-key': `sk_live_guess_${i}_00000000000000` })).status);
    }
    expect(statuses).toEqual([...Array(FAILED_KEY_ATTEMPTS).fill(401), 429]);
    expectEnvelope(await from(client, '/search/ok', { 'x-api-key': KEYS.pro }), 429, 'too_many_failed_attempts');
    expect(receivedFrom(client)).toHaveLength(0);
    // A blocked address has presented no key on a public route: it is still served there.
    expect((await from(client, '/docs/ok')).status).toBe(200);
  });
});

describe('auth: required (the default) is unchanged', () => {
  it('refuses a request without a key', async () => {
    expectEnvelope(await from('198.51.100.30', '/private/ok'), 401, 'missing_api_key');
  });
});

describe('metrics', () => {
  it('labels anonymous decisions with the anonymous tier only: no per-address series', async () => {
    const before = await scrape(gateway.adminUrl);
    const client = '198.51.100.40';
    for (let i = 0; i < PUBLIC_LIMIT + 2; i++) await from(client, '/docs/ok');
    const after = await scrape(gateway.adminUrl);
    expect(changed(before, after, 'sluice_ratelimit_decisions_total')).toEqual({
      'sluice_ratelimit_decisions_total{outcome="allowed",tier="public"}': PUBLIC_LIMIT,
      'sluice_ratelimit_decisions_total{outcome="limited",tier="public"}': 2,
    });
    const series = [...after.keys()];
    expect(series.filter((s) => /198\.51\.100|2001:db8|anon:/.test(s))).toEqual([]);
  });
});

describe('three replicas on one Redis', () => {
  const LIMIT = 20;
  let redisShared: TestRedis;
  let sharedUpstream: TestUpstream;
  let replicas: TestGateway[];
  let configFile: string;
  beforeAll(async () => {
    redisShared = await startRedis({ destructive: true });
    sharedUpstream = await startUpstream();
    configFile = writeConfig(
      baseConfig({
        store: { redis: { url: redisShared.url }, timeout_ms: 1000 },
        trusted_proxies: ['127.0.0.1'],
        anonymous_tier: 'public',
        tiers: { public: { limits: [{ requests: LIMIT, per: '10s' }] } },
        upstreams: { app: { targets: [sharedUpstream.url] } },
        routes: [{ name: 'docs', match: { path_prefix: '/' }, upstream: 'app', auth: 'none' }],
      }),
    );
    replicas = await Promise.all([0, 1, 2].map(() => startGateway(configFile)));
  });
  afterAll(async () => {
    await Promise.all((replicas ?? []).map((g) => g.stop()));
    await sharedUpstream?.close();
    await redisShared?.stop();
    removeConfig(configFile);
  });

  it(`admits exactly ${LIMIT} per address of a concurrent burst spread over the replicas`, async () => {
    const clients = ['203.0.113.10', '2001:db8:c:1::1'];
    const TOTAL = 240;
    const answers = await Promise.all(
      Array.from({ length: TOTAL }, (_, i) =>
        send(`${replicas[i % 3].url}/ok`, { headers: { 'x-forwarded-for': clients[i % 2] }, dispatcher: burstAgent }),
      ),
    );
    const refused = answers.filter((a) => a.status !== 200);
    expect(answers.length - refused.length).toBe(2 * LIMIT);
    for (const res of refused) expectEnvelope(res, 429, 'rate_limit_exceeded');
    for (const client of clients) {
      expect(sharedUpstream.requests.filter((r) => String(r.headers['x-forwarded-for']).startsWith(`${client}, `))).toHaveLength(LIMIT);
    }
    const engaged = await Promise.all(replicas.map((g) => metricValue(g, 'sluice_ratelimit_fallback_engaged_total')));
    expect(engaged).toEqual([0, 0, 0]);
  });
});

describe('Redis Cluster: every counter of an anonymous request in one slot', () => {
  const LIMIT = 6;
  let cluster: TestRedisCluster;
  let clusterUpstream: TestUpstream;
  let clustered: TestGateway;
  let configFile: string;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    clusterUpstream = await startUpstream();
    configFile = writeConfig(
      baseConfig({
        store: { redis: { cluster: { nodes: cluster.nodes.map((n) => `${n.host}:${n.port}`) } }, timeout_ms: 1000 },
        trusted_proxies: ['127.0.0.1'],
        anonymous_tier: 'public',
        tiers: { public: { limits: [{ requests: 50, per: '1m' }, { requests: 100, per: '1h' }] } },
        upstreams: { app: { targets: [clusterUpstream.url] } },
        // three windows per request: the tier's two and the route's
        routes: [{ name: 'docs', match: { path_prefix: '/' }, upstream: 'app', auth: 'none', limits: { public: [{ requests: LIMIT, per: '10s' }] } }],
      }),
    );
    clustered = await startGateway(configFile);
  });
  afterAll(async () => {
    await clustered?.stop();
    await clusterUpstream?.close();
    await cluster?.stop();
    if (configFile) removeConfig(configFile);
  });

  it(`admits exactly ${LIMIT} of a burst per address, IPv4 and IPv6 alike`, async () => {
    const clients = ['203.0.113.30', '2001:db8:d:1::1', '203.0.113.31', '2001:db8:d:2::1'];
    const answers = await Promise.all(
      Array.from({ length: 80 }, (_, i) =>
        send(`${clustered.url}/ok`, { headers: { 'x-forwarded-for': clients[i % clients.length] }, dispatcher: burstAgent }),
      ),
    );
    const statuses: Record<number, number> = {};
    for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
    expect(statuses).toEqual({ 200: clients.length * LIMIT, 429: 80 - clients.length * LIMIT });
    for (const a of answers.filter((res) => res.status === 429)) expect(a.json.error.details).toMatchObject({ limit: LIMIT, window: '10 seconds' });
    expect(await metricValue(clustered, 'sluice_ratelimit_fallback_engaged_total')).toBe(0);
  });
});

describe('without Redis: the fallback limits anonymous callers too', () => {
  const LIMIT = 4;
  let lonelyRedis: TestRedis;
  let fallbackUpstream: TestUpstream;
  let alone: TestGateway;
  let configFile: string;
  beforeAll(async () => {
    lonelyRedis = await startRedis({ destructive: true });
    fallbackUpstream = await startUpstream();
    configFile = writeConfig(
      baseConfig({
        store: { redis: { url: lonelyRedis.url }, timeout_ms: 100 },
        failure_policy: 'fail_open_local',
        trusted_proxies: ['127.0.0.1'],
        anonymous_tier: 'public',
        tiers: { public: { limits: [{ requests: LIMIT, per: '1m' }] } },
        upstreams: { app: { targets: [fallbackUpstream.url] } },
        routes: [{ name: 'docs', match: { path_prefix: '/' }, upstream: 'app', auth: 'none' }],
      }),
    );
    alone = await startGateway(configFile);
  });
  afterAll(async () => {
    await alone?.stop();
    await fallbackUpstream?.close();
    await lonelyRedis?.stop();
    removeConfig(configFile);
  });

  it('goes on from what Redis last counted for the address, and counts a new address from zero', async () => {
    const get = (client: string) => send(`${alone.url}/ok`, { headers: { 'x-forwarded-for': client } });
    expect((await get('203.0.113.20')).headers['x-ratelimit-remaining']).toBe(String(LIMIT - 1));
    await lonelyRedis.kill();
    const statuses = [];
    for (let i = 0; i < LIMIT + 1; i++) statuses.push((await get('203.0.113.20')).status);
    expect(statuses).toEqual([...Array(LIMIT - 1).fill(200), 429, 429]);
    const fresh = [];
    for (let i = 0; i < LIMIT + 1; i++) fresh.push((await get('203.0.113.21')).status);
    expect(fresh).toEqual([...Array(LIMIT).fill(200), 429]);
    expect(await metricValue(alone, 'sluice_ratelimit_fallback_engaged_total')).toBe(1);
  });
});

describe('config check, serve and reload refuse the same mistakes', () => {
  const routes = (extra: Record<string, unknown>) => [{ name: 'docs', match: { path_prefix: '/docs' }, upstream: 'app', ...extra }];
  const base = {
    tiers: { public: { limits: [{ requests: 5, per: '1m' }] }, pro: { limits: [], scopes: ['*'] } },
    upstreams: { app: { targets: ['http://127.0.0.1:9'] } },
  };
  const cases: [string, Record<string, unknown>, string][] = [
    ['auth: none without anonymous_tier', { ...base, routes: routes({ auth: 'none' }) }, 'routes[0].auth: auth: none needs a top-level anonymous_tier (the tier of requests without a key)'],
    ['auth: optional without anonymous_tier', { ...base, routes: routes({ auth: 'optional' }) }, 'routes[0].auth: auth: optional needs a top-level anonymous_tier (the tier of requests without a key)'],
    ['scopes on an auth: none route', { ...base, anonymous_tier: 'public', routes: routes({ auth: 'none', scopes: ['docs:read'] }) }, 'routes[0].scopes: not allowed with auth: none (no key, so no scopes to check)'],
    ['an anonymous_tier naming no tier', { ...base, anonymous_tier: 'guests', routes: routes({ auth: 'none' }) }, 'anonymous_tier: unknown tier "guests"'],
    ['an auth value that is none of the three', { ...base, anonymous_tier: 'public', routes: routes({ auth: 'anonymous' }) }, 'routes[0].auth: expected required, optional or none'],
  ];

  test.each(cases)('config check refuses %s', async (_, config, problem) => {
    const file = writeConfig(config);
    try {
      const out = await runCli(['config', 'check', file]);
      expect(out.code).toBe(1);
      expect(out.stderr).toContain(problem);
    } finally {
      removeConfig(file);
    }
  });

  test('config check accepts scopes on an auth: optional route (they apply to keyed callers)', async () => {
    const file = writeConfig({ ...base, anonymous_tier: 'public', routes: routes({ auth: 'optional', scopes: ['docs:read'] }) });
    try {
      const out = await runCli(['config', 'check', file]);
      expect(out.code).toBe(0);
      expect(out.stdout).toContain('OK');
    } finally {
      removeConfig(file);
    }
  });

  test('serve refuses to start with it', async () => {
    const file = writeConfig(baseConfig({ ...base, routes: routes({ auth: 'none' }) }));
    try {
      const out = await runCli(['serve', '--config', file]);
      expect(out.code).toBe(1);
      expect(out.stdout + out.stderr).toContain('routes[0].auth: auth: none needs a top-level anonymous_tier (the tier of requests without a key)');
    } finally {
      removeConfig(file);
    }
  });

  test('a reload to it is refused, and the running config keeps serving', async () => {
    const good = { ...baseConfig(), ...base, anonymous_tier: 'public', routes: routes({ auth: 'none' }) };
    const file = writeConfig(good);
    const running = await startGateway(file);
    try {
      writeFileSync(file, stringify({ ...good, anonymous_tier: undefined }));
      running.process.kill('SIGHUP');
      await waitFor(() => running.output.some((line) => line.includes('config reload refused')), 5000);
      const refusal = JSON.parse(running.output.find((line) => line.includes('config reload refused'))!);
      expect(refusal.problems).toContain('routes[0].auth: auth: none needs a top-level anonymous_tier (the tier of requests without a key)');
      const res = await send(`${running.url}/docs/ok`);
      expect(res.headers['x-ratelimit-limit']).toBe('5'); // still the public tier: the upstream is down, the limiter ran
    } finally {
      await running.stop();
      removeConfig(file);
    }
  });
});
