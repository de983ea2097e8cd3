import { spawn } from 'node:child_process';
import type { LimitRequest } from '../../src/ratelimit/limiter';
import { RedisLimiter } from '../../src/ratelimit/redis-limiter';
import { closeRedisClient, type RedisClient } from '../../src/redis/client';
import { request, Agent } from 'undici';
import WebSocket from 'ws';
import { ADMIN_TOKEN, adminApi, createKey, type AdminCall } from '../support/admin';
import { baseConfig, removeConfig, startGateway, suiteStack, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send, type SimpleResponse } from '../support/http';
import { gatewayRedisClient, redisCli, startRedis, startRedisCluster, type TestRedis, type TestRedisCluster } from '../support/redis';
import { startUpstream, type TestUpstream } from '../support/upstream';
import { waitFor } from '../support/wait';

// Issue #17's concurrency limit, black-box: real gateway replicas on a real Redis (and a real
// Cluster), a real upstream whose answers take as long as a test asks. Slots taken atomically with the
// windows, given back however the answer ends, renewed while it lasts, expired when their replica dies.

/** Enough connections for every burst to be in flight at once. */
const burstAgent = new Agent({ connections: 128, keepAliveTimeout: 1000 });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The sum over `gateways` of one labelled series of /metrics (0 when absent). */
async function metricSum(gateways: TestGateway[], series: string): Promise<number> {
  let sum = 0;
  for (const g of gateways) {
    const text = await (await request(`${g.adminUrl}/metrics`)).body.text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    if (line) sum += Number(line.split(' ')[1]);
  }
  return sum;
}

function countBy(answers: SimpleResponse[]): Record<number, number> {
  const statuses: Record<number, number> = {};
  for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
  return statuses;
}

/** Requests of one burst (marked in the query) that reached the upstream. */
const reached = (upstream: TestUpstream, marker: string) => upstream.requests.filter((r) => r.url.includes(`burst=${marker}`)).length;

let burstSeq = 0;

afterAll(() => burstAgent.close());

/** `count` requests at once, spread over `gateways`, each answered after `ms`. */
async function burst(gateways: TestGateway[], key: string, count: number, ms: number, headers: Record<string, string> = {}) {
  const marker = `b${++burstSeq}`;
  const answers = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      send(`${gateways[i % gateways.length].url}/v1/app/slow?ms=${ms}&burst=${marker}`, {
        headers: key ? { 'x-api-key': key, ...headers } : headers,
        dispatcher: burstAgent,
      }),
    ),
  );
  return { answers, marker };
}

function expectConcurrencyRefusal(res: SimpleResponse, limit: number): void {
  const error = expectEnvelope(res, 429, 'too_many_concurrent_requests');
  expect(res.headers['retry-after']).toBe('1');
  expect(error.details).toEqual({ limit });
}

describe('concurrency on 3 replicas (default lease)', () => {
  let redis: TestRedis;
  let upstream: TestUpstream;
  let replicas: TestGateway[];
  let admin: AdminCall;

  const stack = suiteStack(
    ({ redis, upstream }) =>
      baseConfig({
        admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
        store: { redis: { url: redis.url }, timeout_ms: 1000, max_wait_ms: 5000 },
        trusted_proxies: ['127.0.0.1'],
        anonymous_tier: 'public',
        tiers: {
          conc: { limits: [{ requests: 100000, per: '1m' }], concurrency: 3, scopes: ['*'] },
          tight: { limits: [{ requests: 3, per: '1m' }], concurrency: 1, scopes: ['*'] },
          serial: { limits: [{ requests: 100000, per: '1m' }], concurrency: 1, scopes: ['*'] },
          plain: { limits: [{ requests: 100000, per: '1m' }], scopes: ['*'] },
          shadowed: { limits: [{ requests: 100000, per: '1m' }], concurrency: { limit: 2, mode: 'shadow' }, scopes: ['*'] },
          trial: { limits: [{ requests: 100000, per: '1m' }], concurrency: 1, mode: 'shadow', scopes: ['*'] },
          public: { limits: [{ requests: 100000, per: '1m' }], concurrency: 2 },
        },
        upstreams: { app: { targets: [upstream.url] } },
        routes: [
          { name: 'open', match: { path_prefix: '/public' }, upstream: 'app', auth: 'none' },
          { name: 'app', match: { path_prefix: '/' }, upstream: 'app' },
        ],
      }),
    { replicas: 3 },
  );
  beforeAll(() => {
    ({ redis, upstream, gateways: replicas } = stack);
    admin = adminApi(replicas[0].adminUrl);
  });

  const usage = async (id: string) => (await admin('GET', `/v1/keys/${id}/usage`)).json;
  const inFlight = async (id: string) => (await usage(id)).concurrency.in_flight as number;
  /** Slots come back when answers end: well before the 30 s lease could expire them. */
  const allReleased = (id: string) => waitFor(async () => (await inFlight(id)) === 0, 3000);

  it('N + k at once on one key: exactly N reach the upstream, k get 429 too_many_concurrent_requests; the next burst admits N again', async () => {
    const { id, key } = await createKey(admin, { name: 'burst', tier: 'conc' });
    for (let round = 0; round < 2; round++) {
      const { answers, marker } = await burst(replicas, key, 8, 1500);
      expect(countBy(answers)).toEqual({ 200: 3, 429: 5 });
      expect(reached(upstream, marker)).toBe(3);
      for (const a of answers.filter((res) => res.status === 429)) expectConcurrencyRefusal(a, 3);
      await allReleased(id);
    }
    expect(await metricSum(replicas, 'sluice_ratelimit_concurrency_refusals_total{tier="conc"}')).toBe(10);
  });

  it('is exact across 3 replicas per key: two keys of one account share nothing', async () => {
    const a = await createKey(admin, { name: 'a', tier: 'conc', account: 'acme' });
    const b = await createKey(admin, { name: 'b', tier: 'conc', account: 'acme' });
    const [burstA, burstB] = await Promise.all([burst(replicas, a.key, 12, 1500), burst(replicas, b.key, 12, 1500)]);
    expect(countBy(burstA.answers)).toEqual({ 200: 3, 429: 9 });
    expect(countBy(burstB.answers)).toEqual({ 200: 3, 429: 9 });
    expect(reached(upstream, burstA.marker)).toBe(3);
    expect(reached(upstream, burstB.marker)).toBe(3);
    await allReleased(a.id);
    await allReleased(b.id);
  });

  it('usage shows the slots in flight and the limit', async () => {
    const { id, key } = await createKey(admin, { name: 'usage', tier: 'conc' });
    const pending = burst(replicas, key, 2, 2000);
    await waitFor(async () => (await inFlight(id)) === 2, 1500);
    expect((await usage(id)).concurrency).toEqual({ limit: 3, in_flight: 2, mode: 'enforce' });
    await pending;
    await allReleased(id);
    const plain = await createKey(admin, { name: 'plain-usage', tier: 'plain' });
    expect((await usage(plain.id)).concurrency).toBeUndefined();
  });

  it('slots come back when clients abort mid-answer', async () => {
    const { id, key } = await createKey(admin, { name: 'aborts', tier: 'conc' });
    const marker = `b${++burstSeq}`;
    const controllers = [0, 1, 2].map(() => new AbortController());
    const aborted = controllers.map((c, i) =>
      send(`${replicas[i].url}/v1/app/slow?ms=20000&burst=${marker}`, { headers: { 'x-api-key': key }, signal: c.signal, dispatcher: burstAgent }).catch((err) => err),
    );
    await waitFor(async () => reached(upstream, marker) === 3, 5000);
    expectConcurrencyRefusal(await send(`${replicas[0].url}/v1/app/ok`, { headers: { 'x-api-key': key } }), 3);
    for (const c of controllers) c.abort();
    await Promise.all(aborted);
    await allReleased(id);
    const { answers } = await burst(replicas, key, 5, 1000);
    expect(countBy(answers)).toEqual({ 200: 3, 429: 2 });
  });

  it('slots come back after error answers: the upstream’s 500, the gateway’s 502', async () => {
    const { id, key } = await createKey(admin, { name: 'errors', tier: 'tight' });
    // tight: one slot and 3 per minute; an error answer that kept its slot would make the next one 429
    expect((await send(`${replicas[0].url}/v1/app/status?code=500`, { headers: { 'x-api-key': key } })).status).toBe(500);
    await allReleased(id);
    expectEnvelope(await send(`${replicas[1].url}/v1/app/reset-early`, { headers: { 'x-api-key': key } }), 502, 'bad_gateway');
    await allReleased(id);
    expect((await send(`${replicas[2].url}/v1/app/ok`, { headers: { 'x-api-key': key } })).status).toBe(200);
  });

  it('a client that sends each request once the last is answered is never refused, on any replica, whatever the answer', async () => {
    const { id, key } = await createKey(admin, { name: 'serial', tier: 'serial' });
    // The slot is free before the answer's last bytes leave: a streamed body, a bodiless answer
    // (HEAD, 204), the upstream's error, the gateway's own 502 envelope.
    const asks: Array<[string, string, number]> = [
      ['GET', '/v1/app/ok', 200],
      ['HEAD', '/v1/app/ok', 200],
      ['GET', '/v1/app/status?code=204', 204],
      ['GET', '/v1/app/status?code=500', 500],
      ['GET', '/v1/app/reset-early', 502],
    ];
    const statuses: number[] = [];
    for (let i = 0; i < 75; i++) {
      const [method, path] = asks[i % asks.length];
      statuses.push((await send(`${replicas[i % 3].url}${path}`, { method, headers: { 'x-api-key': key } })).status);
    }
    expect(statuses).toEqual(Array.from({ length: 75 }, (_, i) => asks[i % asks.length][2]));
    expect(await inFlight(id)).toBe(0);
  });

  it('a request refused by a window takes no slot; one refused for lack of a slot counts in no window', async () => {
    const { id, key } = await createKey(admin, { name: 'atomic', tier: 'tight' });
    const holder = send(`${replicas[0].url}/v1/app/slow?ms=1500`, { headers: { 'x-api-key': key } });
    await waitFor(async () => (await inFlight(id)) === 1, 1000);
    for (const r of replicas) expectConcurrencyRefusal(await send(`${r.url}/v1/app/ok`, { headers: { 'x-api-key': key } }), 1);
    expect((await holder).status).toBe(200);
    await allReleased(id);
    expect((await usage(id)).windows[0].used).toBe(1); // the three refusals were not counted
    expect((await send(`${replicas[1].url}/v1/app/ok`, { headers: { 'x-api-key': key } })).status).toBe(200);
    expect((await send(`${replicas[2].url}/v1/app/ok`, { headers: { 'x-api-key': key } })).status).toBe(200);
    expectEnvelope(await send(`${replicas[0].url}/v1/app/ok`, { headers: { 'x-api-key': key } }), 429, 'rate_limit_exceeded');
    expect(await inFlight(id)).toBe(0); // the window's refusal took no slot
  });

  it('a WebSocket holds its slot for its life and gives it back when it closes', async () => {
    const { id, key } = await createKey(admin, { name: 'ws', tier: 'tight' });
    const ws = new WebSocket(`${replicas[0].url.replace('http', 'ws')}/v1/app/ws`, { headers: { 'x-api-key': key } });
    await new Promise((resolve, reject) => ws.once('message', resolve).once('error', reject));
    expect(await inFlight(id)).toBe(1);
    expectConcurrencyRefusal(await send(`${replicas[1].url}/v1/app/ok`, { headers: { 'x-api-key': key } }), 1);
    ws.close();
    await allReleased(id);
    expect((await send(`${replicas[1].url}/v1/app/ok`, { headers: { 'x-api-key': key } })).status).toBe(200);
  });

  it('a shadow concurrency limit never refuses, takes and gives back slots, and counts would-be refusals', async () => {
    const before = await metricSum(replicas, 'sluice_ratelimit_decisions_total{tier="shadowed",outcome="shadow_limited"}');
    const { id, key } = await createKey(admin, { name: 'shadow', tier: 'shadowed' });
    const pending = burst(replicas, key, 5, 2000);
    await waitFor(async () => (await inFlight(id)) === 5, 1500);
    expect((await usage(id)).concurrency).toEqual({ limit: 2, in_flight: 5, mode: 'shadow' });
    const { answers, marker } = await pending;
    expect(countBy(answers)).toEqual({ 200: 5 });
    expect(reached(upstream, marker)).toBe(5);
    expect((await metricSum(replicas, 'sluice_ratelimit_decisions_total{tier="shadowed",outcome="shadow_limited"}')) - before).toBe(3);
    await allReleased(id);
    // a tier in mode: shadow makes its plain-number concurrency a shadow one too
    const trial = await createKey(admin, { name: 'trial', tier: 'trial' });
    expect(countBy((await burst(replicas, trial.key, 3, 500)).answers)).toEqual({ 200: 3 });
    expect(replicas.some((g) => g.output.some((l) => l.includes('shadow rate limit') && l.includes('"concurrency"')))).toBe(true);
  });

  it('anonymous callers of the anonymous tier: per client address', async () => {
    const marker = `b${++burstSeq}`;
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        send(`${replicas[i % 3].url}/public/slow?ms=1500&burst=${marker}`, {
          headers: { 'x-forwarded-for': i % 2 === 0 ? '203.0.113.7' : '2001:db8:7::1' },
          dispatcher: burstAgent,
        }),
      ),
    );
    expect(countBy(answers)).toEqual({ 200: 4, 429: 6 });
    for (const a of answers.filter((res) => res.status === 429)) expectConcurrencyRefusal(a, 2);
  });

  it('a tier without concurrency sends no slot key or argument and makes no release call (MONITOR)', async () => {
    const plain = await createKey(admin, { name: 'monitored-plain', tier: 'plain' });
    const limited = await createKey(admin, { name: 'monitored-conc', tier: 'conc' });
    // every replica caches both keys first: only the limiter's calls are left to watch
    for (const g of replicas) for (const k of [plain.key, limited.key]) expect((await send(`${g.url}/v1/app/ok`, { headers: { 'x-api-key': k } })).status).toBe(200);
    await allReleased(limited.id);
    const monitor = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), 'monitor']);
    let seen = '';
    monitor.stdout.on('data', (chunk: Buffer) => (seen += chunk.toString()));
    await waitFor(async () => seen.startsWith('OK'), 3000);
    try {
      for (let i = 0; i < 3; i++) expect((await send(`${replicas[i].url}/v1/app/ok`, { headers: { 'x-api-key': plain.key } })).status).toBe(200);
      for (let i = 0; i < 3; i++) expect((await send(`${replicas[i].url}/v1/app/ok`, { headers: { 'x-api-key': limited.key } })).status).toBe(200);
      await waitFor(async () => (seen.match(/"zrem"/gi) ?? []).length >= 3, 3000);
    } finally {
      monitor.kill();
    }
    // client commands only ("[0 lua]" lines are what the script itself ran)
    const lines = seen.split('\n').filter((l) => !l.includes(' lua] '));
    const plainLines = lines.filter((l) => l.includes(plain.id));
    expect(plainLines).toHaveLength(3); // one script call per request, nothing else
    for (const l of plainLines) {
      // exactly the arguments a tier without concurrency always sent: one key, cost, now, limit, window
      expect(l).toMatch(new RegExp(`"evalsha" "[0-9a-f]{40}" "1" "[^"]*\\{${plain.id}\\}:60000" "1" "" "100000" "60000"$`, 'i'));
    }
    expect(seen.split('\n').filter((l) => l.includes(plain.id) && /zadd|zcard|zrem|zrange/i.test(l))).toEqual([]);
    const limitedLines = lines.filter((l) => l.includes(limited.id));
    expect(limitedLines.filter((l) => /"evalsha"/i.test(l) && l.includes(`{${limited.id}}:slots`) && l.includes('"slot"')).length).toBe(3);
    expect(limitedLines.filter((l) => /"zrem"/i.test(l)).length).toBe(3);
    expect(lines.filter((l) => /"zrem"/i.test(l) && !l.includes(limited.id)).length).toBe(0);
  });
});

describe('leases: renewed while the answer lasts, expired when the replica died', () => {
  const LEASE_MS = 1000;
  let gateways: TestGateway[];
  let admin: AdminCall;

  const stack = suiteStack(
    ({ redis, upstream }) =>
      baseConfig({
        admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
        store: { redis: { url: redis.url }, timeout_ms: 1000, max_wait_ms: 5000 },
        rate_limiting: { concurrency_lease: `${LEASE_MS}ms` },
        tiers: {
          one: { limits: [{ requests: 100000, per: '1m' }], concurrency: 1, scopes: ['*'] },
          two: { limits: [{ requests: 100000, per: '1m' }], concurrency: 2, scopes: ['*'] },
        },
        upstreams: { app: { targets: [upstream.url] } },
        routes: [{ name: 'app', match: { path_prefix: '/' }, upstream: 'app', timeout_ms: 60000 }],
      }),
    { replicas: 2 },
  );
  beforeAll(() => {
    ({ gateways } = stack);
    admin = adminApi(gateways[0].adminUrl);
  });

  const ok = (g: TestGateway, key: string) => send(`${g.url}/v1/ok`, { headers: { 'x-api-key': key } });

  it('a long download keeps its slot past the lease time', async () => {
    const { key } = await createKey(admin, { name: 'download', tier: 'one' });
    // 150 chunks, 20 ms apart: about 3 lease times
    const download = request(`${gateways[0].url}/v1/chunked?chunks=150`, { headers: { 'x-api-key': key } });
    const res = await download;
    expect(res.statusCode).toBe(200);
    const body = res.body.text();
    await sleep(LEASE_MS * 2);
    expectConcurrencyRefusal(await ok(gateways[1], key), 1);
    expect((await body).split('\n').filter(Boolean)).toHaveLength(150);
    await waitFor(async () => (await ok(gateways[1], key)).status === 200, 2000);
  });

  it('a WebSocket keeps its slot past the lease time', async () => {
    const { key } = await createKey(admin, { name: 'ws-long', tier: 'one' });
    const ws = new WebSocket(`${gateways[0].url.replace('http', 'ws')}/v1/ws`, { headers: { 'x-api-key': key } });
    await new Promise((resolve, reject) => ws.once('message', resolve).once('error', reject));
    await sleep(LEASE_MS * 3);
    expectConcurrencyRefusal(await ok(gateways[1], key), 1);
    const echoed = new Promise((resolve) => ws.once('message', (data) => resolve(data.toString())));
    ws.send('still here');
    expect(await echoed).toBe('still here');
    ws.close();
    await waitFor(async () => (await ok(gateways[1], key)).status === 200, 2000);
  });

  it('a replica SIGKILLed while holding slots: they are free again after the lease time', async () => {
    const { id, key } = await createKey(admin, { name: 'killed', tier: 'two' });
    const victim = gateways[1];
    const held = [0, 1].map(() => send(`${victim.url}/v1/slow?ms=30000`, { headers: { 'x-api-key': key } }).catch((err) => err));
    await waitFor(async () => (await admin('GET', `/v1/keys/${id}/usage`)).json.concurrency.in_flight === 2, 3000);
    await sleep(LEASE_MS * 1.5); // renewed: still held past one lease time
    expectConcurrencyRefusal(await ok(gateways[0], key), 2);
    await victim.stop('SIGKILL');
    const killedAt = Date.now();
    await Promise.all(held);
    await waitFor(async () => (await ok(gateways[0], key)).status === 200, LEASE_MS * 4);
    expect(Date.now() - killedAt).toBeLessThanOrEqual(LEASE_MS * 4);
    expect((await admin('GET', `/v1/keys/${id}/usage`)).json.concurrency.in_flight).toBe(0);
  });
});

describe('in a Redis Cluster', () => {
  let cluster: TestRedisCluster;
  let upstream: TestUpstream;
  let gateway: TestGateway;
  let configFile: string;

  beforeAll(async () => {
    [cluster, upstream] = await Promise.all([startRedisCluster(), startUpstream()]);
    configFile = writeConfig(
      baseConfig({
        admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
        store: { redis: { cluster: { nodes: cluster.nodes.map((n) => `${n.host}:${n.port}`) } }, timeout_ms: 1000, max_wait_ms: 5000 },
        tiers: {
          conc: { limits: [{ requests: 100000, per: '1m' }], account_limits: [{ requests: 100000, per: '1h' }], quota: { requests: 100000, per: 'month' }, concurrency: 4, scopes: ['*'] },
        },
        upstreams: { app: { targets: [upstream.url] } },
        routes: [{ name: 'app', match: { path_prefix: '/' }, upstream: 'app', limits: { conc: [{ requests: 100000, per: '10s' }] } }],
      }),
    );
    gateway = await startGateway(configFile);
  }, 90_000);

  afterAll(async () => {
    await gateway?.stop();
    await upstream?.close();
    await cluster?.stop();
    if (configFile) removeConfig(configFile);
  });

  it('every counter of a request, its slot included, shares one slot: exact bursts with and without an account', async () => {
    const admin = adminApi(gateway.adminUrl);
    for (const body of [{ name: 'solo', tier: 'conc' }, { name: 'member', tier: 'conc', account: 'globex' }]) {
      const { id, key } = await createKey(admin, body);
      for (let round = 0; round < 2; round++) {
        const { answers, marker } = await burst([gateway], key, 9, 1500);
        expect(countBy(answers)).toEqual({ 200: 4, 429: 5 });
        expect(reached(upstream, marker)).toBe(4);
        await waitFor(async () => (await admin('GET', `/v1/keys/${id}/usage`)).json.concurrency.in_flight === 0, 3000);
      }
    }
  });
});

describe('the script: slots by the script clock, with the windows in one call', () => {
  let redis: TestRedis;
  let client: RedisClient;
  let limiter: RedisLimiter;
  beforeAll(async () => {
    redis = await startRedis();
    client = await gatewayRedisClient(redis);
    limiter = new RedisLimiter(client, 'conc-script:');
  });
  afterAll(async () => {
    await limiter?.close();
    if (client) await closeRedisClient(client);
    await redis?.stop();
  });

  const req = (subject: string, extra: Partial<LimitRequest> = {}): LimitRequest => ({
    subject,
    windows: [{ name: '60000', limit: 100, windowMs: 60_000 }],
    concurrency: { limit: 2, leaseMs: 5000 },
    cost: 1,
    ...extra,
  });

  it('a lease expires by the script clock: past its expiry the slot is free again, before it not', async () => {
    const t = 1_800_000_000_000;
    const first = await limiter.check(req('clock'), t);
    const second = await limiter.check(req('clock'), t + 10);
    expect([first.allowed, second.allowed]).toEqual([true, true]);
    expect(await limiter.check(req('clock'), t + 4999)).toMatchObject({ allowed: false, concurrency: { inFlight: 2, blocking: true } });
    const later = await limiter.check(req('clock'), t + 5001); // the first lease ended at t + 5000
    expect(later).toMatchObject({ allowed: true, concurrency: { inFlight: 2, blocking: false } });
    for (const d of [first, second, later]) d.release?.();
  });

  it('the slot set shares the hash tag of the key (or of its account) and is given back by ZREM', async () => {
    const held = await limiter.check(req('tagged', { account: 'acme' }));
    expect(await redisCli(redis.port, 'ZCARD', 'conc-script:rl:{@acme}:tagged:slots')).toBe('1');
    held.release!();
    await waitFor(async () => (await redisCli(redis.port, 'ZCARD', 'conc-script:rl:{@acme}:tagged:slots')) === '0', 2000);
    const solo = await limiter.check(req('solo'));
    expect(await redisCli(redis.port, 'ZCARD', 'conc-script:rl:{solo}:slots')).toBe('1');
    solo.release!();
  });

  it('a peek (cost 0) takes no slot; a refusal by a window takes none either', async () => {
    const peek = await limiter.check(req('peek', { cost: 0 }));
    expect(peek).toMatchObject({ allowed: true, concurrency: { inFlight: 0 } });
    expect(peek.release).toBeUndefined();
    const full = { windows: [{ name: '60000', limit: 1, windowMs: 60_000 }] };
    (await limiter.check(req('win', full))).release!();
    const refused = await limiter.check(req('win', full));
    expect(refused.allowed).toBe(false);
    expect(refused.release).toBeUndefined();
    expect(await redisCli(redis.port, 'ZCARD', 'conc-script:rl:{win}:slots')).toBe('0');
  });
});

describe('without Redis: each replica applies its share of the limit locally', () => {
  let redis: TestRedis;
  let alone: TestGateway;
  const stack = suiteStack(({ redis, upstream }) =>
    baseConfig({
      store: { redis: { url: redis.url }, timeout_ms: 100, replicas_hint: 1 },
      failure_policy: 'fail_open_local',
      trusted_proxies: ['127.0.0.1'],
      anonymous_tier: 'public',
      tiers: { public: { limits: [{ requests: 1000, per: '1m' }], concurrency: 2 } },
      upstreams: { app: { targets: [upstream.url] } },
      routes: [{ name: 'docs', match: { path_prefix: '/' }, upstream: 'app', auth: 'none' }],
    }),
  );
  beforeAll(() => {
    ({ redis, gateway: alone } = stack);
  });

  it('admits 2 of a burst, and 2 again once they ended (released locally)', async () => {
    await redis.kill();
    const headers = { 'x-forwarded-for': '198.51.100.9' };
    // the first calls fail over to the local limiter
    await waitFor(async () => (await send(`${alone.url}/ok`, { headers })).status === 200, 5000);
    for (let round = 0; round < 2; round++) {
      const { answers } = await burst([alone], '', 6, 1000, headers);
      expect(countBy(answers)).toEqual({ 200: 2, 429: 4 });
      for (const a of answers.filter((res) => res.status === 429)) expectConcurrencyRefusal(a, 2);
    }
  });
});
