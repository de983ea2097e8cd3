import { createHash } from 'node:crypto';
import { ADMIN_TOKEN, adminApi, createKey, type AdminCall } from '../support/admin';
import { suiteStack, baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send, type SimpleResponse } from '../support/http';
import { redisCli, type TestRedis } from '../support/redis';
import { metricValue } from '../support/scenarios';
import { type TestUpstream } from '../support/upstream';

// The key API on a real gateway and a real Redis: every endpoint, every error code, the token, and
// that no answer ever carries the admin token or a stored hash. The key cache TTL is a minute, so
// every change seen at once on the request path went through the change feed, not an expiry.

const GRACE_MS = 2000;

let redis: TestRedis;
let upstream: TestUpstream;
let gateway: TestGateway;
const answers: SimpleResponse[] = [];
let admin: AdminCall;

const stack = suiteStack(({ redis, upstream }) =>
  baseConfig({
    // This suite sends wrong tokens on purpose; the brute-force block has its own suite (admin-hardening).
    admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN, rotation_grace: `${GRACE_MS}ms`, failed_tokens: { max_attempts: 1000 } },
    store: { redis: { url: redis.url }, timeout_ms: 1000, cache: { ttl: '60s' } },
    rate_limiting: { failed_keys: { max_attempts: 1000, per: '1m', block_for: '1s' } },
    tiers: {
      free: { limits: [{ requests: 5, per: '1m' }, { requests: 100, per: '1d' }], scopes: ['users:read', 'users:write'] },
      pro: { limits: [{ requests: 600, per: '1m' }], scopes: ['*'] },
      open: { limits: [], scopes: ['*'] },
    },
    upstreams: { app: { targets: [upstream.url] } },
    routes: [{ name: 'users', match: { path_prefix: '/v1/users' }, upstream: 'app', scopes: ['users:read'] }],
  }));

beforeAll(() => {
  ({ redis, upstream, gateway } = stack);
  admin = adminApi(gateway.adminUrl, ADMIN_TOKEN, answers);
});

const call = (key: string) => send(`${gateway.url}/v1/users/ok`, { headers: { 'x-api-key': key } });
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const PUBLIC_FIELDS = ['id', 'name', 'tier', 'scopes', 'status', 'created_at', 'updated_at', 'expires_at', 'rotated_at', 'revoked_at'];

describe('the admin token', () => {
  it('is required on every key endpoint: missing, wrong or not a bearer token → 401 invalid_admin_token', async () => {
    const attempts: [string, string, Record<string, string>][] = [
      ['GET', '/v1/keys', { authorization: '' }],
      ['GET', '/v1/keys', { authorization: 'Bearer wrong-token' }],
      ['GET', '/v1/keys', { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` }],
      ['GET', '/v1/keys', { authorization: `Bearer ${ADMIN_TOKEN}x` }],
      ['POST', '/v1/keys', { authorization: '' }],
      ['GET', '/v1/keys/key_0123', { authorization: '' }],
      ['PATCH', '/v1/keys/key_0123', { authorization: '' }],
      ['DELETE', '/v1/keys/key_0123', { authorization: '' }],
      ['POST', '/v1/keys/key_0123/rotate', { authorization: '' }],
      ['GET', '/v1/keys/key_0123/usage', { authorization: '' }],
    ];
    for (const [method, path, headers] of attempts) {
      const res = await admin(method, path, method === 'POST' || method === 'PATCH' ? { name: 'x', tier: 'free' } : undefined, headers);
      const error = expectEnvelope(res, 401, 'invalid_admin_token');
      expect(error).toEqual({ code: 'invalid_admin_token', message: 'A valid admin bearer token is required.' });
    }
    // nothing was created by the refused POST
    const listed = await admin('GET', '/v1/keys');
    expect(listed.json.keys).toEqual([]);
  });

  it('accepts the scheme in any case, and leaves /healthz, /readyz and /metrics open', async () => {
    expect((await admin('GET', '/v1/keys', undefined, { authorization: `bearer ${ADMIN_TOKEN}` })).status).toBe(200);
    for (const path of ['/healthz', '/readyz', '/metrics']) expect((await send(`${gateway.adminUrl}${path}`)).status).toBe(200);
  });

  it('without admin.token configured: every key request gets 401, the start-up log warns, health stays open', async () => {
    const file = writeConfig(
      baseConfig({
        tiers: { free: { limits: [], scopes: [] } },
        upstreams: { app: { targets: [upstream.url] } },
        routes: [{ name: 'r', match: { path_prefix: '/' }, upstream: 'app' }],
      }),
    );
    const tokenless = await startGateway(file);
    try {
      const noToken = adminApi(tokenless.adminUrl, 'anything');
      expectEnvelope(await noToken('GET', '/v1/keys'), 401, 'invalid_admin_token');
      expectEnvelope(await noToken('POST', '/v1/keys', { name: 'x', tier: 'free' }), 401, 'invalid_admin_token');
      expectEnvelope(await noToken('GET', '/v1/keys', undefined, { authorization: '' }), 401, 'invalid_admin_token');
      expect((await send(`${tokenless.adminUrl}/healthz`)).status).toBe(200);
      expect((await send(`${tokenless.adminUrl}/metrics`)).status).toBe(200);
      expect(tokenless.output.some((line) => line.includes('"level":40') && line.includes('admin.token is not set'))).toBe(true);
    } finally {
      await tokenless.stop();
      removeConfig(file);
    }
  });
});

describe('POST /v1/keys', () => {
  it('creates a key: 201 with the plaintext once; only its hash is stored; the key works at once', async () => {
    const res = await admin('POST', '/v1/keys', { name: 'Acme', tier: 'free', scopes: ['users:read'], expires_at: '2099-01-01T00:00:00+01:00' });
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(Object.keys(res.json)).toEqual(['id', 'key', 'name', 'tier', 'scopes', 'status', 'created_at', 'expires_at']);
    expect(res.json).toMatchObject({ name: 'Acme', tier: 'free', scopes: ['users:read'], status: 'active', expires_at: '2098-12-31T23:00:00.000Z' });
    expect(res.json.id).toMatch(/^key_[0-9a-f]{20}$/);
    expect(res.json.key).toMatch(/^sk_live_[A-Za-z0-9_-]{32}$/);

    expect(await redisCli(redis.port, 'GET', `sluice:secret:${sha256(res.json.key)}`)).toBe(res.json.id);
    expect(await redisCli(redis.port, '--no-raw', 'HGETALL', `sluice:key:{${res.json.id}}`)).not.toContain(res.json.key);
    expect((await call(res.json.key)).status).toBe(200);

    const shown = await admin('GET', `/v1/keys/${res.json.id}`);
    expect(shown.status).toBe(200);
    expect(shown.text).not.toContain(res.json.key);
    const { key: _plaintext, ...withoutKey } = res.json;
    expect(shown.json).toEqual(withoutKey);
  });

  it('answers a missing field with exactly the seed 400', async () => {
    const res = await admin('POST', '/v1/keys', { name: 'no tier' });
    expect(res.json).toEqual({
      error: { code: 'invalid_parameters', message: "The 'tier' field is required", details: { field: 'tier', requirement: 'required' } },
    });
    expectEnvelope(res, 400, 'invalid_parameters');
  });

  it.each([
    ['an ill-typed field', { name: 'x', tier: 5 }, { field: 'tier', requirement: 'a tier name of at most 64 characters' }],
    ['an empty name', { name: '  ', tier: 'free' }, { field: 'name', requirement: 'a non-empty string of at most 200 characters' }],
    ['a bad scope', { name: 'x', tier: 'free', scopes: ['users:read', 7] }, { field: 'scopes[1]', requirement: 'an array of at most 100 scopes like users:read' }],
    ['a date without a time zone', { name: 'x', tier: 'free', expires_at: '2099-01-01' }, { field: 'expires_at', requirement: 'an ISO 8601 date-time with a time zone, like 2027-01-01T00:00:00Z' }],
    ['a too short imported key', { name: 'x', tier: 'free', key: 'short' }, { field: 'key', requirement: '16 to 256 characters of A-Z, a-z, 0-9, _ and -' }],
    ['an unknown field', { name: 'x', tier: 'free', owner: 'bob' }, { field: 'owner', requirement: 'not allowed' }],
    ['a body that is not an object', ['name', 'tier'], { field: 'body', requirement: 'a JSON object' }],
  ])('answers %s with 400 invalid_parameters naming the field', async (_case, body, details) => {
    const res = await admin('POST', '/v1/keys', body);
    expect(expectEnvelope(res, 400, 'invalid_parameters').details).toEqual(details);
  });

  it('answers malformed JSON, a wrong or missing content type with 400, and a body over 16 KB with 413', async () => {
    const malformed = await admin('POST', '/v1/keys', '{"name": "x", "tier":');
    expect(expectEnvelope(malformed, 400, 'invalid_parameters')).toEqual({
      code: 'invalid_parameters',
      message: 'The request body must be valid JSON',
      details: { field: 'body', requirement: 'valid JSON' },
    });
    const text = await admin('POST', '/v1/keys', '{"name":"x","tier":"free"}', { 'content-type': 'text/plain' });
    expect(expectEnvelope(text, 400, 'invalid_parameters').details).toEqual({ field: 'content-type', requirement: 'application/json' });
    const none = await admin('POST', '/v1/keys', '{"name":"x","tier":"free"}', { 'content-type': '' });
    expect(expectEnvelope(none, 400, 'invalid_parameters').details).toEqual({ field: 'content-type', requirement: 'application/json' });
    const charset = await admin('POST', '/v1/keys', { name: 'charset ok', tier: 'free' }, { 'content-type': 'application/json; charset=utf-8' });
    expect(charset.status).toBe(201);

    const big = await admin('POST', '/v1/keys', { name: 'x', tier: 'free', padding: 'x'.repeat(17 * 1024) });
    expect(expectEnvelope(big, 413, 'payload_too_large').details).toEqual({ max_body_bytes: 16384 });
  });

  it('answers an unknown tier with 422 unknown_tier, scopes beyond the tier or a past expiry with 422 validation_failed', async () => {
    const tier = expectEnvelope(await admin('POST', '/v1/keys', { name: 'x', tier: 'gold' }), 422, 'unknown_tier');
    expect(tier.message).toBe('Unknown tier "gold"; configured tiers: free, pro, open.');
    expect(tier.details).toEqual({ field: 'tier' });
    const scopes = expectEnvelope(await admin('POST', '/v1/keys', { name: 'x', tier: 'free', scopes: ['billing:write'] }), 422, 'validation_failed');
    expect(scopes.details).toEqual({ field: 'scopes' });
    expect(scopes.message).toContain('billing:write');
    const past = expectEnvelope(await admin('POST', '/v1/keys', { name: 'x', tier: 'free', expires_at: '2001-01-01T00:00:00Z' }), 422, 'validation_failed');
    expect(past.details).toEqual({ field: 'expires_at' });
  });

  it('imports an existing key (201, it works) and refuses it a second time with 409 key_exists', async () => {
    const key = 'sk_test_imported_admin_api_000001';
    const first = await admin('POST', '/v1/keys', { name: 'imported', tier: 'pro', key });
    expect(first.status).toBe(201);
    expect(first.json.key).toBe(key);
    expect((await call(key)).status).toBe(200);
    const again = await admin('POST', '/v1/keys', { name: 'imported again', tier: 'free', key });
    expect(expectEnvelope(again, 409, 'key_exists')).toEqual({ code: 'key_exists', message: 'An API key with this value already exists.' });
  });
});

describe('GET /v1/keys', () => {
  it('pages through every key in id order with a stable cursor, never showing a secret or a hash', async () => {
    for (let i = 0; i < 5; i++) await createKey(admin, { name: `page ${i}`, tier: 'free' });
    const all = await admin('GET', '/v1/keys?limit=500');
    const ids: string[] = all.json.keys.map((k: { id: string }) => k.id);
    expect(ids.length).toBeGreaterThanOrEqual(7);
    expect(ids).toEqual([...ids].sort());
    expect(all.json.next_cursor).toBeNull();

    const walked: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: SimpleResponse = await admin('GET', `/v1/keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.json.keys.length).toBeLessThanOrEqual(2);
      walked.push(...page.json.keys.map((k: { id: string }) => k.id));
      cursor = page.json.next_cursor;
      if (pages++ === 0) await createKey(admin, { name: 'made while paging', tier: 'free' }); // may land before or after the cursor
    } while (cursor !== null);
    expect(new Set(walked).size).toBe(walked.length); // no duplicates
    for (const id of ids) expect(walked).toContain(id); // nothing that existed throughout is skipped

    for (const key of all.json.keys) for (const field of Object.keys(key)) expect(PUBLIC_FIELDS).toContain(field);
    expect(all.text).not.toMatch(/sk_live_|sk_test_|secret_hashes|previous_secrets|[0-9a-f]{64}/);
  });

  it('defaults to 50 per page and refuses a bad limit, cursor or an unknown parameter with 400', async () => {
    for (let i = 0; i < 45; i++) await createKey(admin, { name: `bulk ${i}`, tier: 'open' });
    const page = await admin('GET', '/v1/keys');
    expect(page.json.keys).toHaveLength(50);
    expect(page.json.next_cursor).toBe(page.json.keys[49].id);
    for (const [query, field] of [
      ['limit=0', 'limit'],
      ['limit=501', 'limit'],
      ['limit=ten', 'limit'],
      ['cursor=not-a-cursor', 'cursor'],
      ['status=active', 'status'],
    ]) {
      const error = expectEnvelope(await admin('GET', `/v1/keys?${query}`), 400, 'invalid_parameters');
      expect(error.details.field).toBe(field);
    }
  });
});

describe('GET /v1/keys/{id}', () => {
  it('answers an unknown id with 404 key_not_found, naming only a well-formed id', async () => {
    expect(expectEnvelope(await admin('GET', '/v1/keys/key_00000000000000000000'), 404, 'key_not_found')).toEqual({
      code: 'key_not_found',
      message: "API key with ID 'key_00000000000000000000' does not exist",
    });
    const pasted = await admin('GET', '/v1/keys/sk_live_pasted_by_mistake_0000000');
    expect(expectEnvelope(pasted, 404, 'key_not_found').message).toBe('The API key does not exist.');
    expect(pasted.text).not.toContain('sk_live_pasted');
  });

  it('answers other methods and paths under /v1/keys with 404 route_not_found', async () => {
    expectEnvelope(await admin('PUT', '/v1/keys', { name: 'x', tier: 'free' }), 404, 'route_not_found');
    expectEnvelope(await admin('GET', '/v1/keys/key_1/secrets'), 404, 'route_not_found');
  });
});

describe('PATCH /v1/keys/{id}', () => {
  it('changes name, tier, scopes and expiry; a tier change applies to the next request at once', async () => {
    const created = await createKey(admin, { name: 'before', tier: 'free', scopes: ['users:read'] });
    const first = await call(created.key);
    expect(first.headers['x-ratelimit-limit']).toBe('5'); // cached now, for a minute

    const patched = await admin('PATCH', `/v1/keys/${created.id}`, { name: 'after', tier: 'pro', expires_at: '2098-01-01T00:00:00Z' });
    expect(patched.status).toBe(200);
    expect(patched.json).toMatchObject({ id: created.id, name: 'after', tier: 'pro', scopes: ['users:read'], expires_at: '2098-01-01T00:00:00.000Z' });
    expect(patched.json.updated_at).toEqual(expect.any(String));
    const next = await call(created.key);
    expect(next.status).toBe(200);
    expect(next.headers['x-ratelimit-limit']).toBe('600');

    const cleared = await admin('PATCH', `/v1/keys/${created.id}`, { scopes: null, expires_at: null });
    expect(cleared.status).toBe(200);
    expect(cleared.json.scopes).toBeUndefined();
    expect(cleared.json.expires_at).toBeUndefined();
  });

  it('refuses bad patches: 400 for shape, 422 for meaning, 404 for an unknown key', async () => {
    const created = await createKey(admin, { name: 'p', tier: 'free', scopes: ['users:write'] });
    const empty = expectEnvelope(await admin('PATCH', `/v1/keys/${created.id}`, {}), 400, 'invalid_parameters');
    expect(empty.details.field).toBe('body');
    expect(expectEnvelope(await admin('PATCH', `/v1/keys/${created.id}`, { status: 'active' }), 400, 'invalid_parameters').details).toEqual({
      field: 'status',
      requirement: 'not allowed',
    });
    expect(expectEnvelope(await admin('PATCH', `/v1/keys/${created.id}`, { name: null }), 400, 'invalid_parameters').details.field).toBe('name');
    expectEnvelope(await admin('PATCH', `/v1/keys/${created.id}`, { tier: 'gold' }), 422, 'unknown_tier');
    expectEnvelope(await admin('PATCH', `/v1/keys/${created.id}`, { scopes: ['admin'] }), 422, 'validation_failed');
    expectEnvelope(await admin('PATCH', `/v1/keys/${created.id}`, { expires_at: '2001-01-01T00:00:00Z' }), 422, 'validation_failed');
    expectEnvelope(await admin('PATCH', '/v1/keys/key_00000000000000000000', { name: 'x' }), 404, 'key_not_found');
    const big = await admin('PATCH', `/v1/keys/${created.id}`, { name: 'x'.repeat(20 * 1024) });
    expectEnvelope(big, 413, 'payload_too_large');
    // nothing above changed the key
    expect((await admin('GET', `/v1/keys/${created.id}`)).json).toMatchObject({ name: 'p', tier: 'free', scopes: ['users:write'] });
  });
});

describe('POST /v1/keys/{id}/rotate', () => {
  it('gives a new secret; the old one works for the grace period, then stops; the quota is kept', async () => {
    const created = await createKey(admin, { name: 'rotating', tier: 'free' });
    expect((await call(created.key)).status).toBe(200);
    expect((await call(created.key)).status).toBe(200);

    const rotated = await admin('POST', `/v1/keys/${created.id}/rotate`);
    expect(rotated.status).toBe(201);
    expect(rotated.json.id).toBe(created.id);
    expect(rotated.json.key).toMatch(/^sk_live_/);
    expect(rotated.json.key).not.toBe(created.key);
    expect(rotated.json.rotated_at).toEqual(expect.any(String));
    const rotatedAt = Date.now();

    const withNew = await call(rotated.json.key);
    expect(withNew.status).toBe(200);
    expect(withNew.headers['x-ratelimit-remaining']).toBe('2'); // 5 per minute: 2 before, this one: the quota followed the key
    expect((await call(created.key)).status).toBe(200); // in its grace period

    await sleep(Math.max(0, rotatedAt + GRACE_MS + 200 - Date.now()));
    expectEnvelope(await call(created.key), 401, 'invalid_api_key');
    expect((await call(rotated.json.key)).status).toBe(200);
    expect((await admin('GET', `/v1/keys/${created.id}`)).text).not.toContain(rotated.json.key);
  });

  it('accepts an empty JSON body, refuses parameters, unknown and revoked keys', async () => {
    const created = await createKey(admin, { name: 'r', tier: 'free' });
    expect((await admin('POST', `/v1/keys/${created.id}/rotate`, {})).status).toBe(201);
    expect(expectEnvelope(await admin('POST', `/v1/keys/${created.id}/rotate`, { grace: '1h' }), 400, 'invalid_parameters').details).toEqual({
      field: 'grace',
      requirement: 'not allowed',
    });
    expectEnvelope(await admin('POST', '/v1/keys/key_00000000000000000000/rotate'), 404, 'key_not_found');
    await admin('DELETE', `/v1/keys/${created.id}`);
    const revoked = expectEnvelope(await admin('POST', `/v1/keys/${created.id}/rotate`), 422, 'validation_failed');
    expect(revoked.details).toEqual({ field: 'status' });
  });
});

describe('DELETE /v1/keys/{id}', () => {
  it('revokes: 200 with the record (kept, status revoked); the cached key gets 401 at once; again is harmless', async () => {
    const created = await createKey(admin, { name: 'doomed', tier: 'free' });
    expect((await call(created.key)).status).toBe(200); // cached for a minute
    const revoked = await admin('DELETE', `/v1/keys/${created.id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.json).toMatchObject({ id: created.id, name: 'doomed', status: 'revoked' });
    expect(revoked.json.revoked_at).toEqual(expect.any(String));
    expectEnvelope(await call(created.key), 401, 'invalid_api_key');

    const again = await admin('DELETE', `/v1/keys/${created.id}`);
    expect(again.status).toBe(200);
    expect(again.json.revoked_at).toBe(revoked.json.revoked_at);
    expect((await admin('GET', `/v1/keys/${created.id}`)).json.status).toBe('revoked');
    expectEnvelope(await admin('PATCH', `/v1/keys/${created.id}`, { name: 'revived?' }), 422, 'validation_failed');
    expectEnvelope(await admin('DELETE', '/v1/keys/key_00000000000000000000'), 404, 'key_not_found');
  });
});

describe('GET /v1/keys/{id}/usage', () => {
  it('reports every window of the tier from the request path counters, without counting itself', async () => {
    const created = await createKey(admin, { name: 'usage', tier: 'free' });
    for (let i = 0; i < 3; i++) expect((await call(created.key)).status).toBe(200);
    const first = await admin('GET', `/v1/keys/${created.id}/usage`);
    const second = await admin('GET', `/v1/keys/${created.id}/usage`);
    expect(first.status).toBe(200);
    const now = Date.now() / 1000;
    expect(first.json.id).toBe(created.id);
    expect(first.json.tier).toBe('free');
    expect(first.json.windows.map((w: Record<string, unknown>) => [w.window, w.window_seconds, w.limit, w.used, w.remaining])).toEqual([
      ['1 minute', 60, 5, 3, 2],
      ['1 day', 86400, 100, 3, 97],
    ]);
    for (const w of first.json.windows) {
      expect(w.reset).toBeGreaterThan(now);
      expect(w.reset).toBeLessThanOrEqual(Math.ceil(now) + w.window_seconds * 1.1);
    }
    expect(second.json.windows.map((w: { used: number }) => w.used)).toEqual([3, 3]);
    expect((await call(created.key)).headers['x-ratelimit-remaining']).toBe('1');
  });

  it('is empty for an unlimited tier; 404 for an unknown key', async () => {
    const created = await createKey(admin, { name: 'open', tier: 'open' });
    expect((await admin('GET', `/v1/keys/${created.id}/usage`)).json).toEqual({ id: created.id, tier: 'open', windows: [], account_windows: [], quota: null });
    expectEnvelope(await admin('GET', '/v1/keys/key_00000000000000000000/usage'), 404, 'key_not_found');
  });
});

describe('a key whose tier left the config', () => {
  it('gets 403 forbidden on the request path (counted in sluice_keys_unknown_tier_total), 422 unknown_tier for usage', async () => {
    const created = await createKey(admin, { name: 'orphan', tier: 'free' });
    expect((await call(created.key)).status).toBe(200);
    // What a config reload that drops a tier does to its keys, simulated on the stored record.
    await redisCli(redis.port, 'HSET', `sluice:key:{${created.id}}`, 'tier', 'retired');
    await redisCli(redis.port, 'PUBLISH', 'sluice:key-events', created.id);
    await sleep(200);
    const before = await metricValue(gateway, 'sluice_keys_unknown_tier_total');
    const res = await call(created.key);
    expect(expectEnvelope(res, 403, 'forbidden').message).toBe('The tier of this API key is no longer configured on this gateway.');
    expect(await metricValue(gateway, 'sluice_keys_unknown_tier_total')).toBe(before + 1);
    expectEnvelope(await admin('GET', `/v1/keys/${created.id}/usage`), 422, 'unknown_tier');
    expect((await admin('PATCH', `/v1/keys/${created.id}`, { tier: 'free' })).status).toBe(200); // the way out
    expect((await call(created.key)).status).toBe(200);
  });
});

describe('secrets', () => {
  it('no answer of the admin listener ever carried the admin token or a stored hash', async () => {
    const stored = (await redisCli(redis.port, 'KEYS', 'sluice:secret:*')).split('\n').filter(Boolean).map((k) => k.slice('sluice:secret:'.length));
    expect(stored.length).toBeGreaterThan(50);
    expect(answers.length).toBeGreaterThan(100);
    for (const res of answers) {
      const whole = JSON.stringify(res.headers) + res.text;
      expect(whole).not.toContain(ADMIN_TOKEN);
      for (const hash of stored) expect(whole).not.toContain(hash);
    }
  });

  it('the logs never contain the admin token or a key', async () => {
    const log = gateway.output.join('\n');
    expect(log).not.toContain(ADMIN_TOKEN);
    expect(log).not.toMatch(/sk_live_[A-Za-z0-9_-]{8}|sk_test_imported/);
    expect(log).toContain('"action":"revoked"'); // the audit lines are there, by id
  });
});

describe('when Redis cannot answer', () => {
  it('answers 503 service_unavailable with Retry-After', async () => {
    redis.pause();
    try {
      const res = await admin('GET', '/v1/keys');
      expectEnvelope(res, 503, 'service_unavailable');
      expect(res.headers['retry-after']).toBe('1');
      expectEnvelope(await admin('POST', '/v1/keys', { name: 'x', tier: 'free' }), 503, 'service_unavailable');
    } finally {
      redis.resume();
    }
  });
});
