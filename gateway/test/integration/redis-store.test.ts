import { createHash } from 'node:crypto';
import { suiteStack, baseConfig, removeConfig, runCli, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send } from '../support/http';
import { freePort } from '../support/ports';
import { redisCli, type TestRedis } from '../support/redis';
import { type TestUpstream } from '../support/upstream';

// The Redis key store end to end: keys made with the CLI, the cache, revocation, expiry, Redis
// stopped (cached keys live on, uncached get 503), Redis emptied (marker missing), corrupt data (500).

let redis: TestRedis;
let upstream: TestUpstream;
let gateway: TestGateway;
let configFile: string;

const CACHE_TTL_MS = 1000;

const stack = suiteStack(({ redis, upstream }) =>
  baseConfig({
    store: { redis: { url: redis.url }, timeout_ms: 1000, cache: { ttl: `${CACHE_TTL_MS}ms` } },
    tiers: { free: { limits: [], scopes: ['users:read'] }, pro: { limits: [], scopes: ['*'] } },
    upstreams: { app: { targets: [upstream.url] } },
    routes: [{ name: 'users', match: { path_prefix: '/v1/users' }, upstream: 'app', scopes: ['users:read'] }],
  }));

beforeAll(() => {
  ({ redis, upstream, gateway, configFile } = stack);
});

async function createKey(tier = 'free', extra: string[] = []): Promise<{ id: string; key: string; tier: string; name: string }> {
  const out = await runCli(['keys', 'create', '--config', configFile, '--tier', tier, '--name', 'test key', '--json', ...extra]);
  expect(out.stderr).toBe('');
  expect(out.code).toBe(0);
  return JSON.parse(out.stdout);
}

const get = (key: string) => send(`${gateway.url}/v1/users/ok`, { headers: { 'x-api-key': key } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('keys in Redis', () => {
  it('creates a key with the CLI (shown once, stored only as a hash) and serves it', async () => {
    const created = await createKey();
    expect(created.key).toMatch(/^sk_live_[A-Za-z0-9_-]{32}$/);
    expect(created).toMatchObject({ tier: 'free', name: 'test key' });
    expect((await get(created.key)).status).toBe(200);

    const sha = createHash('sha256').update(created.key).digest('hex');
    expect(await redisCli(redis.port, 'GET', `sluice:secret:${sha}`)).toBe(created.id);
    const dump = await redisCli(redis.port, '--no-raw', 'HGETALL', `sluice:key:{${created.id}}`);
    expect(dump).not.toContain(created.key);
    expect(dump).toContain(sha);
  });

  it('lists keys without secrets or hashes', async () => {
    const created = await createKey('pro');
    const out = await runCli(['keys', 'list', '--config', configFile, '--json']);
    expect(out.code).toBe(0);
    const listed = out.stdout.trim().split('\n').map((line) => JSON.parse(line));
    const mine = listed.find((k) => k.id === created.id);
    expect(mine).toMatchObject({ id: created.id, tier: 'pro', status: 'active' });
    expect(out.stdout).not.toContain(created.key);
    expect(out.stdout).not.toContain('secret_hashes');
  });

  it('refuses an unknown tier and scopes beyond the tier, naming the problem', async () => {
    const unknown = await runCli(['keys', 'create', '--config', configFile, '--tier', 'gold', '--name', 'x']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('Unknown tier "gold"');
    const scopes = await runCli(['keys', 'create', '--config', configFile, '--tier', 'free', '--name', 'x', '--scopes', 'admin']);
    expect(scopes.code).toBe(1);
    expect(scopes.stderr).toContain('admin');
  });

  it('a key revoked with the CLI gets 401 at once: the CLI announces the change, the replica drops its cache entry', async () => {
    const created = await createKey();
    expect((await get(created.key)).status).toBe(200); // now cached
    const revoked = await runCli(['keys', 'revoke', created.id, '--config', configFile]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`Revoked ${created.id}`);
    expectEnvelope(await get(created.key), 401, 'invalid_api_key'); // announced: no waiting for the cache TTL
    const missing = await runCli(['keys', 'revoke', 'key_doesnotexist', '--config', configFile]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("API key with ID 'key_doesnotexist' does not exist");
  });

  it('rotates a key with the CLI: the new key is printed once, the old one keeps working for the grace period', async () => {
    const created = await createKey();
    const out = await runCli(['keys', 'rotate', created.id, '--config', configFile, '--json']);
    expect(out.code).toBe(0);
    const rotated = JSON.parse(out.stdout);
    expect(rotated).toMatchObject({ id: created.id, tier: 'free', name: 'test key' });
    expect(rotated.key).not.toBe(created.key);
    expect((await get(rotated.key)).status).toBe(200);
    expect((await get(created.key)).status).toBe(200); // admin.rotation_grace defaults to 24h
  });

  it('an expired key gets 401', async () => {
    // 4 s of validity: starting the CLI alone took over 1.5 s on a loaded CI machine.
    const expiresAt = Date.now() + 4000;
    const created = await createKey('free', ['--expires-at', new Date(expiresAt).toISOString()]);
    expect((await get(created.key)).status).toBe(200);
    await sleep(expiresAt + 100 - Date.now());
    expectEnvelope(await get(created.key), 401, 'invalid_api_key');
  });

  it('a corrupt key record is a 500 internal_error with the request id, and the gateway keeps serving', async () => {
    const good = await createKey();
    const secret = 'sk_test_corrupt_record_000000';
    const sha = createHash('sha256').update(secret).digest('hex');
    await redisCli(redis.port, 'SET', `sluice:secret:${sha}`, 'key_corrupt');
    await redisCli(redis.port, 'HSET', `sluice:key:{key_corrupt}`, 'id', 'key_corrupt', 'secret_hashes', 'not json');
    const res = await get(secret);
    const error = expectEnvelope(res, 500, 'internal_error');
    expect(error.details).toEqual({ request_id: res.headers['x-request-id'] });
    expect(error.message).toBe('An unexpected error occurred. Please try again or contact support if the issue persists.');
    expect((await get(good.key)).status).toBe(200);
  });
});

describe('when Redis is in trouble', () => {
  it('paused Redis: a cached key is still served, an uncached one gets 503 (never 401) within the timeout', async () => {
    const cached = await createKey();
    const uncached = await createKey();
    expect((await get(cached.key)).status).toBe(200);
    redis.pause();
    try {
      expect((await get(cached.key)).status).toBe(200);
      const started = Date.now();
      const res = await get(uncached.key);
      const error = expectEnvelope(res, 503, 'service_unavailable');
      expect(res.headers['retry-after']).toBe('1');
      expect(error.message).not.toContain('Redis');
      expect(Date.now() - started).toBeLessThan(3000);
      // after its TTL the cached entry is stale, but served while the store cannot answer
      await sleep(CACHE_TTL_MS + 200);
      expect((await get(cached.key)).status).toBe(200);
    } finally {
      redis.resume();
    }
    expect((await get(uncached.key)).status).toBe(200);
  });

  it('killed Redis: a cached key is still served, an uncached one gets a fast 503; restarted empty, the marker is missing', async () => {
    const cached = await createKey();
    const uncached = await createKey();
    expect((await get(cached.key)).status).toBe(200);
    await redis.kill();
    expect((await get(cached.key)).status).toBe(200);
    const started = Date.now();
    expectEnvelope(await get(uncached.key), 503, 'service_unavailable');
    expect(Date.now() - started).toBeLessThan(1000); // no offline queue: no waiting for a reconnect
    await sleep(1500);
    // Under fail_open_local a replica without Redis still serves (cached keys, local limits): it stays ready.
    expect((await send(`${gateway.adminUrl}/readyz`)).status).toBe(200);

    await redis.restart(); // empty: nothing was persisted
    await sleep(2500); // reconnect (≤ 1 s back-off) + a health check
    expect(expectEnvelope(await send(`${gateway.adminUrl}/readyz`), 503, 'service_unavailable').details).toEqual({ reason: 'marker_missing' });
    expectEnvelope(await get(uncached.key), 503, 'service_unavailable'); // not a false 401
    expect((await get(cached.key)).status).toBe(200);
    // Nothing but `sluice store init` or `sluice keys import` marks it again (store-init.test.ts).
    expect((await runCli(['store', 'init', '--config', configFile])).code).toBe(0);
  });

  it('Redis restarted empty: uncached keys get 503, /readyz fails with marker_missing, until the store is restored', async () => {
    const known = await createKey();
    expect((await send(`${gateway.url}/v1/users/ok`, { headers: { 'x-api-key': known.key } })).status).toBe(200);
    await redisCli(redis.port, 'FLUSHALL');
    await sleep(1500); // the health check runs about once a second

    const ready = await send(`${gateway.adminUrl}/readyz`);
    const error = expectEnvelope(ready, 503, 'service_unavailable');
    expect(error.details).toEqual({ reason: 'marker_missing' });
    expectEnvelope(await get('sk_live_unknown_but_maybe_real_000'), 503, 'service_unavailable');
    expect(gateway.output.some((line) => line.includes('KEY STORE MARKER MISSING'))).toBe(true);

    // Keys cannot be made on it (that would hide the loss); declaring it new makes it ready again.
    expect((await runCli(['keys', 'create', '--config', configFile, '--tier', 'free', '--name', 'x'])).code).toBe(1);
    expect((await runCli(['store', 'init', '--config', configFile])).code).toBe(0);
    const restored = await createKey();
    await sleep(1500);
    expect((await send(`${gateway.adminUrl}/readyz`)).status).toBe(200);
    expect((await get(restored.key)).status).toBe(200);
    expectEnvelope(await get('sk_live_unknown_but_maybe_real_000'), 401, 'invalid_api_key');
  });
});

describe('the CLI with the embedded store', () => {
  const embeddedConfig = (admin: Record<string, unknown>) =>
    writeConfig(
      baseConfig({
        admin,
        tiers: { free: { limits: [], scopes: [] } },
        upstreams: { app: { targets: [upstream.url] } },
        routes: [{ name: 'r', match: { path_prefix: '/' }, upstream: 'app' }],
      }),
    );

  it('manages the keys of the running gateway through its admin API, and says so when none is running', async () => {
    const file = embeddedConfig({ host: '127.0.0.1', port: await freePort(), token: 'embedded-admin-token-0000-0123456789abcdef' });
    try {
      const none = await runCli(['keys', 'create', '--config', file, '--tier', 'free', '--name', 'x']);
      expect(none.code).toBe(1);
      expect(none.stderr).toContain('no gateway is running with this config');
      expect(none.stderr).toContain('sluice serve --config');

      const embedded = await startGateway(file);
      try {
        const out = await runCli(['keys', 'create', '--config', file, '--tier', 'free', '--name', 'embedded', '--json']);
        expect(out.stderr).toBe('');
        const created = JSON.parse(out.stdout);
        expect(created).toMatchObject({ tier: 'free', name: 'embedded' });
        const call = () => send(`${embedded.url}/ok`, { headers: { 'x-api-key': created.key } });
        expect((await call()).status).toBe(200);
        const listed = await runCli(['keys', 'list', '--config', file, '--json']);
        expect(listed.stdout.trim().split('\n').map((line) => JSON.parse(line).id)).toEqual([created.id]);
        expect((await runCli(['keys', 'revoke', created.id, '--config', file])).code).toBe(0);
        expectEnvelope(await call(), 401, 'invalid_api_key');
        const bad = await runCli(['keys', 'create', '--config', file, '--tier', 'gold', '--name', 'x']);
        expect(bad.code).toBe(1);
        expect(bad.stderr).toContain('Unknown tier "gold"');
        const exported = await runCli(['keys', 'export', '--config', file]);
        expect(exported.code).toBe(1);
        expect(exported.stderr).toContain('works on the Redis key store');
      } finally {
        await embedded.stop();
      }
    } finally {
      removeConfig(file);
    }
  });

  it('without admin.token it refuses and says why', async () => {
    const file = embeddedConfig({ host: '127.0.0.1', port: 9 });
    try {
      const out = await runCli(['keys', 'list', '--config', file]);
      expect(out.code).toBe(1);
      expect(out.stderr).toContain('embedded in-memory key store');
      expect(out.stderr).toContain('admin.token');
    } finally {
      removeConfig(file);
    }
  });
});

describe('logs', () => {
  it('never contain a key', async () => {
    const created = await createKey();
    await get(created.key);
    await get('sk_live_wrong_wrong_wrong_wrong_0');
    const all = gateway.output.join('\n');
    expect(all).not.toContain(created.key);
    expect(all).not.toContain('sk_live_wrong_wrong_wrong_wrong_0');
  });
});
