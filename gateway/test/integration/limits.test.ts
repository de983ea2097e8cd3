import { request } from 'undici';
import { ADMIN_TOKEN, adminApi, createKey, type AdminCall } from '../support/admin';
import { baseConfig, removeConfig, runCli, startGateway, suiteStack, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send, type SimpleResponse } from '../support/http';
import { startRedis, type TestRedis } from '../support/redis';
import type { TestUpstream } from '../support/upstream';
import { waitFor } from '../support/wait';

// Issue #17's limits, black-box: three real gateway replicas on one real Redis, a real upstream,
// keys made through the admin API and the CLI. Account windows shared by the keys of one account
// (exact under a burst across the replicas), a key's own limits replacing its tier's, calendar
// quotas, shadow mode, the usage report, PATCH rules, the CLI and backups of the new fields.

let upstream: TestUpstream;
let replicas: TestGateway[];
let admin: AdminCall;
let configFile: string;

const config = (redisUrl: string, upstreamUrl: string) =>
  baseConfig({
    admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
    store: { redis: { url: redisUrl }, timeout_ms: 1000, max_wait_ms: 5000 },
    tiers: {
      pro: {
        limits: [{ requests: 1000, per: '1m' }],
        account_limits: [{ requests: 40, per: '1m' }],
        quota: { requests: 100000, per: 'month' },
        scopes: ['*'],
      },
      basic: {
        limits: [{ requests: 3, per: '1m' }],
        account_limits: [{ requests: 8, per: '1h' }],
        quota: { requests: 10, per: 'day' },
        scopes: ['*'],
      },
      daily: { limits: [], quota: { requests: 3, per: 'day' }, scopes: ['*'] },
      trial: { limits: [{ requests: 2, per: '1m' }], quota: { requests: 3, per: 'week' }, mode: 'shadow', scopes: ['*'] },
      mixed: { limits: [{ requests: 2, per: '1m', mode: 'shadow' }, { requests: 4, per: '1h' }], scopes: ['*'] },
    },
    upstreams: { app: { targets: [upstreamUrl] } },
    routes: [
      { name: 'users', match: { path_prefix: '/v1/users' }, upstream: 'app', limits: { basic: [{ requests: 6, per: '1m' }] } },
      { name: 'other', match: { path_prefix: '/' }, upstream: 'app' },
    ],
  });

const stack = suiteStack(({ redis, upstream }) => config(redis.url, upstream.url), { replicas: 3 });
beforeAll(() => {
  ({ upstream, gateways: replicas, configFile } = stack);
  admin = adminApi(replicas[0].adminUrl);
});

const call = (key: string, path = '/v1/other', replica = 0) => send(`${replicas[replica].url}${path}`, { headers: { 'x-api-key': key } });

/** Sends requests one after another and returns their statuses. */
async function statuses(key: string, count: number, path = '/v1/other'): Promise<number[]> {
  const seen: number[] = [];
  for (let i = 0; i < count; i++) seen.push((await call(key, path, i % 3)).status);
  return seen;
}

const repeat = (value: number, times: number) => Array.from({ length: times }, () => value);

/** The sum over all replicas of one series of /metrics (0 when absent). */
async function metricSum(series: string): Promise<number> {
  let sum = 0;
  for (const g of replicas) {
    const text = await (await request(`${g.adminUrl}/metrics`)).body.text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    if (line) sum += Number(line.split(' ')[1]);
  }
  return sum;
}

/** Unix ms of the next midnight UTC. */
const nextUtcMidnight = (nowMs: number) => (Math.floor(nowMs / 86_400_000) + 1) * 86_400_000;

describe('account windows', () => {
  it('are exact across 3 replicas under a concurrent burst from two keys of one account', async () => {
    const [a, b] = [await createKey(admin, { name: 'a', tier: 'pro', account: 'acme' }), await createKey(admin, { name: 'b', tier: 'pro', account: 'acme' })];
    const loner = await createKey(admin, { name: 'loner', tier: 'pro' }); // no account: not counted in acme's window
    upstream.reset();
    const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => call(i % 2 === 0 ? a.key : b.key, `/v1/other/${i}`, i % 3)));
    const counts: Record<number, number> = {};
    for (const res of answers) counts[res.status] = (counts[res.status] ?? 0) + 1;
    expect(counts).toEqual({ 200: 40, 429: 260 });
    expect(upstream.requests.filter((r) => r.url.startsWith('/v1/other/'))).toHaveLength(40);
    for (const refused of answers.filter((res) => res.status === 429)) {
      expect(expectEnvelope(refused, 429, 'rate_limit_exceeded').details).toMatchObject({ limit: 40, window: '1 minute' });
      expect(refused.headers['x-ratelimit-limit']).toBe('40');
    }
    expect((await call(loner.key)).status).toBe(200);

    // The usage report of either key shows the account's shared count, and the key's own.
    const usageA = (await admin('GET', `/v1/keys/${a.id}/usage`)).json;
    const usageB = (await admin('GET', `/v1/keys/${b.id}/usage`)).json;
    expect(usageA.account).toBe('acme');
    expect(usageA.account_windows).toEqual([expect.objectContaining({ window: '1 minute', limit: 40, used: 40, remaining: 0, mode: 'enforce' })]);
    expect(usageB.account_windows[0].used).toBe(40);
    expect(usageA.windows[0].used + usageB.windows[0].used).toBe(40);
    expect(usageA.quota).toMatchObject({ window: 'calendar month', limit: 100000, used: usageA.windows[0].used, mode: 'enforce' });
  });

  it('every key of one account is in one tier: creating or moving a key into another tier is 422', async () => {
    const first = await createKey(admin, { name: 'g1', tier: 'basic', account: 'globex' });
    const other = await admin('POST', '/v1/keys', { name: 'g2', tier: 'pro', account: 'globex' });
    expect(expectEnvelope(other, 422, 'validation_failed').details).toEqual({ field: 'tier' });
    const second = await createKey(admin, { name: 'g2', tier: 'basic', account: 'globex' });
    const moved = await admin('PATCH', `/v1/keys/${second.id}`, { tier: 'pro' });
    expect(expectEnvelope(moved, 422, 'validation_failed').details).toEqual({ field: 'tier' });
    // Once the other key is revoked, the last active key of the account may move.
    expect((await admin('DELETE', `/v1/keys/${first.id}`)).status).toBe(200);
    expect((await admin('PATCH', `/v1/keys/${second.id}`, { tier: 'pro' })).json.tier).toBe('pro');
  });

  it('the account is set at creation only: PATCH of it is 422 validation_failed, whatever the value', async () => {
    const key = await createKey(admin, { name: 'p', tier: 'pro', account: 'initech' });
    for (const account of ['other', 'initech', null, 7]) {
      const res = await admin('PATCH', `/v1/keys/${key.id}`, { account });
      expect(expectEnvelope(res, 422, 'validation_failed').details).toEqual({ field: 'account' });
    }
    const plain = await createKey(admin, { name: 'q', tier: 'pro' });
    expectEnvelope(await admin('PATCH', `/v1/keys/${plain.id}`, { account: 'initech' }), 422, 'validation_failed');
    expect((await admin('GET', `/v1/keys/${plain.id}`)).json.account).toBeUndefined();
    // A bad account name at creation is a 400 like any bad field.
    for (const account of ['', 'a b', '{x}', 'a'.repeat(65), 5]) {
      expect(expectEnvelope(await admin('POST', '/v1/keys', { name: 'x', tier: 'pro', account }), 400, 'invalid_parameters').details.field).toBe('account');
    }
  });
});

describe("a key's own limits", () => {
  it('replace its tier’s windows, but route windows still apply', async () => {
    const tierOnly = await createKey(admin, { name: 't', tier: 'basic' });
    expect(await statuses(tierOnly.key, 4, '/v1/users/x')).toEqual([200, 200, 200, 429]); // the tier's 3/min
    const own = await createKey(admin, { name: 'o', tier: 'basic', limits: [{ requests: 100, per: '1m' }] });
    expect((await admin('GET', `/v1/keys/${own.id}`)).json.limits).toEqual([{ requests: 100, per: '1m' }]);
    const seen = await statuses(own.key, 7, '/v1/users/x');
    expect(seen).toEqual([...repeat(200, 6), 429]); // the route's 6/min for basic, not the tier's 3
    const refused = await call(own.key, '/v1/users/x');
    expect(expectEnvelope(refused, 429, 'rate_limit_exceeded').details).toMatchObject({ limit: 6, window: '1 minute' });
  });

  it('replace its tier’s windows, but account windows and the quota still apply', async () => {
    const accounted = await createKey(admin, { name: 'ac', tier: 'basic', account: 'hooli', limits: [{ requests: 100, per: '1m' }] });
    expect(await statuses(accounted.key, 9)).toEqual([...repeat(200, 8), 429]); // the account's 8/h
    expect(expectEnvelope(await call(accounted.key), 429, 'rate_limit_exceeded').details).toMatchObject({ limit: 8, window: '1 hour' });

    const alone = await createKey(admin, { name: 'al', tier: 'basic', limits: [{ requests: 100, per: '1m' }, { requests: 500, per: '1d' }] });
    expect(await statuses(alone.key, 11)).toEqual([...repeat(200, 10), 429]); // the tier's quota, 10 a day
    const usage = (await admin('GET', `/v1/keys/${alone.id}/usage`)).json;
    expect(usage.windows.map((w: { window: string; limit: number; used: number }) => [w.window, w.limit, w.used])).toEqual([
      ['1 minute', 100, 10],
      ['1 day', 500, 10],
    ]);
    expect(usage.quota).toMatchObject({ window: 'calendar day', limit: 10, used: 10, remaining: 0 });
  });

  it('PATCH limits changes them on every replica; null gives the tier’s back', async () => {
    const key = await createKey(admin, { name: 'pl', tier: 'basic' });
    expect((await admin('PATCH', `/v1/keys/${key.id}`, { limits: [{ requests: 1, per: '1m' }] })).json.limits).toEqual([{ requests: 1, per: '1m' }]);
    await new Promise((resolve) => setTimeout(resolve, 1500)); // key changes reach every replica within a second
    expect([(await call(key.key, '/v1/other', 1)).status, (await call(key.key, '/v1/other', 2)).status]).toEqual([200, 429]);
    const cleared = await admin('PATCH', `/v1/keys/${key.id}`, { limits: null });
    expect(cleared.json.limits).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await statuses(key.key, 3)).toEqual([200, 200, 429]); // the tier's 3/min, one used already
    for (const limits of [[{ requests: 0, per: '1m' }], [{ requests: 1, per: '1 minute' }], [{ requests: 1, per: '1m' }, { requests: 2, per: '60s' }], 'x']) {
      expect(expectEnvelope(await admin('PATCH', `/v1/keys/${key.id}`, { limits }), 400, 'invalid_parameters').details.field).toMatch(/^limits/);
    }
  });
});

describe('calendar quotas', () => {
  it('refuse past the quota with the calendar window, until the next UTC boundary', async () => {
    const key = await createKey(admin, { name: 'd', tier: 'daily' });
    const before = await metricSum('sluice_ratelimit_quota_refusals_total{tier="daily",period="day"}');
    const ok = await call(key.key);
    expect(ok.status).toBe(200);
    expect(ok.headers['x-ratelimit-limit']).toBe('3');
    expect(ok.headers['x-ratelimit-remaining']).toBe('2');
    expect(ok.headers['x-ratelimit-reset']).toBe(String(nextUtcMidnight(Date.now()) / 1000));
    expect(await statuses(key.key, 3)).toEqual([200, 200, 429]);
    const refused = await call(key.key);
    const now = Date.now();
    const details = expectEnvelope(refused, 429, 'rate_limit_exceeded').details;
    expect(details).toMatchObject({ limit: 3, window: 'calendar day' });
    const untilMidnight = (nextUtcMidnight(now) - now) / 1000;
    expect(details.retry_after).toBeGreaterThanOrEqual(Math.floor(untilMidnight) - 5);
    expect(details.retry_after).toBeLessThanOrEqual(Math.ceil(untilMidnight) + 5);
    expect(refused.headers['retry-after']).toBe(String(details.retry_after));
    expect(refused.headers['x-ratelimit-reset']).toBe(String(nextUtcMidnight(now) / 1000));
    expect((await metricSum('sluice_ratelimit_quota_refusals_total{tier="daily",period="day"}')) - before).toBe(2);
  });
});

describe('shadow mode', () => {
  it('a shadow tier never refuses and sends no rate-limit headers, but counts every request and reports each would-be refusal', async () => {
    const key = await createKey(admin, { name: 's', tier: 'trial' });
    const before = await metricSum('sluice_ratelimit_decisions_total{tier="trial",outcome="shadow_limited"}');
    const answers: SimpleResponse[] = [];
    for (let i = 0; i < 6; i++) answers.push(await call(key.key, '/v1/other', i % 3));
    expect(answers.map((res) => res.status)).toEqual(repeat(200, 6));
    for (const res of answers) expect(Object.keys(res.headers).filter((h) => h.includes('ratelimit') || h === 'retry-after')).toEqual([]);
    // requests 3..6 would have been refused by the 2/min window (4..6 by the weekly quota too): 4
    expect((await metricSum('sluice_ratelimit_decisions_total{tier="trial",outcome="shadow_limited"}')) - before).toBe(4);
    const usage = (await admin('GET', `/v1/keys/${key.id}/usage`)).json;
    expect(usage.windows).toEqual([expect.objectContaining({ limit: 2, used: 6, remaining: 0, mode: 'shadow' })]);
    expect(usage.quota).toMatchObject({ window: 'calendar week', limit: 3, used: 6, mode: 'shadow' });
    // logged with key id, tier and window; never the secret
    const shadowLines = () => replicas.flatMap((g) => g.output).filter((line) => line.includes('shadow rate limit') && line.includes(key.id));
    await waitFor(() => shadowLines().length >= 4, 5_000); // log lines are written in batches
    const logged = shadowLines();
    expect(logged).toHaveLength(4);
    for (const line of logged) expect(JSON.parse(line)).toMatchObject({ key_id: key.id, tier: 'trial', windows: expect.arrayContaining(['1 minute']) });
    expect(logged.some((line) => JSON.parse(line).windows.includes('calendar week'))).toBe(true);
    for (const line of replicas.flatMap((g) => g.output)) expect(line).not.toContain(key.key);
  });

  it('a shadow window of an enforcing tier: enforced windows of the same request still refuse, headers speak for them', async () => {
    const key = await createKey(admin, { name: 'm', tier: 'mixed' });
    const before = await metricSum('sluice_ratelimit_decisions_total{tier="mixed",outcome="shadow_limited"}');
    const answers: SimpleResponse[] = [];
    for (let i = 0; i < 5; i++) answers.push(await call(key.key, '/v1/other', i % 3));
    expect(answers.map((res) => res.status)).toEqual([200, 200, 200, 200, 429]);
    expect(answers.map((res) => res.headers['x-ratelimit-limit'])).toEqual(repeat(4, 5).map(String));
    expect(answers.map((res) => res.headers['x-ratelimit-remaining'])).toEqual(['3', '2', '1', '0', '0']);
    expect(expectEnvelope(answers[4], 429, 'rate_limit_exceeded').details).toMatchObject({ limit: 4, window: '1 hour' });
    expect((await metricSum('sluice_ratelimit_decisions_total{tier="mixed",outcome="shadow_limited"}')) - before).toBe(2);
    expect(await metricSum('sluice_ratelimit_decisions_total{tier="mixed",outcome="limited"}')).toBe(1);
  });
});

describe('the CLI and backups', () => {
  async function cli(...args: string[]) {
    const out = await runCli(args);
    if (out.code !== 0) throw new Error(`sluice ${args.join(' ')} → ${out.code}: ${out.stderr}`);
    return out.stdout;
  }

  it('keys create --account --limits, keys update, keys show (with usage)', async () => {
    const created = JSON.parse(await cli('keys', 'create', '--config', configFile, '--tier', 'basic', '--name', 'cli', '--account', 'umbrella', '--limits', '100/1m,5000/1d', '--json'));
    const shown = JSON.parse(await cli('keys', 'show', created.id, '--config', configFile, '--json'));
    expect(shown.key).toMatchObject({ id: created.id, tier: 'basic', account: 'umbrella', limits: [{ requests: 100, per: '1m' }, { requests: 5000, per: '1d' }] });
    expect(shown.usage.windows.map((w: { limit: number }) => w.limit)).toEqual([100, 5000]);

    expect((await call(created.key)).status).toBe(200);
    const text = await cli('keys', 'show', created.id, '--config', configFile);
    expect(text).toContain('account: umbrella');
    expect(text).toContain('limits: 100/1m, 5000/1d');
    expect(text).toMatch(/key\s+1 minute\s+1 \/ 100/);
    expect(text).toMatch(/account\s+1 hour\s+1 \/ 8/);
    expect(text).toMatch(/quota\s+calendar day\s+1 \/ 10/);

    const updated = await cli('keys', 'update', created.id, '--config', configFile, '--limits', '7/1m', '--name', 'cli2');
    expect(updated).toContain('limits: 7/1m');
    expect((await admin('GET', `/v1/keys/${created.id}`)).json).toMatchObject({ name: 'cli2', limits: [{ requests: 7, per: '1m' }], account: 'umbrella' });
    expect(await cli('keys', 'update', created.id, '--config', configFile, '--limits', 'tier')).toContain("limits: (the tier's)");

    const bad = await runCli(['keys', 'create', '--config', configFile, '--tier', 'basic', '--name', 'x', '--limits', '100/1minute']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--limits must be');
    const other = JSON.parse(await cli('keys', 'create', '--config', configFile, '--tier', 'basic', '--name', 'cli3', '--account', 'umbrella', '--json'));
    const refusedMove = await runCli(['keys', 'update', other.id, '--config', configFile, '--tier', 'pro']);
    expect(refusedMove.code).toBe(1);
    expect(refusedMove.stderr).toContain('must be in one tier');
  });

  it('export/import round-trips account and limits; records without them stay as they were', async () => {
    const withFields = await createKey(admin, { name: 'bk', tier: 'basic', account: 'wayne', limits: [{ requests: 9, per: '1h' }] });
    const without = await createKey(admin, { name: 'plain', tier: 'basic' });
    const backup = await cli('keys', 'export', '--config', configFile);
    const lines = backup.trim().split('\n').map((line) => JSON.parse(line));
    expect(lines.find((r) => r.id === withFields.id)).toMatchObject({ account: 'wayne', limits: [{ requests: 9, per: '1h' }] });
    const plainLine = lines.find((r) => r.id === without.id);
    expect('account' in plainLine || 'limits' in plainLine).toBe(false);

    const target = await startRedis({ destructive: true });
    const targetConfig = writeConfig(config(target.url, upstream.url));
    try {
      const { writeFileSync } = await import('node:fs');
      const file = `${targetConfig}.backup`;
      writeFileSync(file, backup);
      await cli('keys', 'import', file, '--config', targetConfig);
      const restored = JSON.parse(await cli('keys', 'show', withFields.id, '--config', targetConfig, '--json'));
      expect(restored.key).toMatchObject({ account: 'wayne', limits: [{ requests: 9, per: '1h' }] });
      const restoredPlain = JSON.parse(await cli('keys', 'show', without.id, '--config', targetConfig, '--json'));
      expect(restoredPlain.key.account).toBeUndefined();
      expect(restoredPlain.key.limits).toBeUndefined();
      // a bad account in a backup line is refused before anything is imported
      const broken = backup.replace('"account":"wayne"', '"account":"wa yne"');
      writeFileSync(file, broken);
      const out = await runCli(['keys', 'import', file, '--config', targetConfig]);
      expect(out.code).toBe(1);
      expect(out.stderr).toMatch(/line \d+: account/);
    } finally {
      removeConfig(targetConfig);
      await target.stop();
    }
  });
});

describe('without Redis (fail_open_local)', () => {
  let own: TestRedis;
  let gateway: TestGateway;
  let file: string;

  beforeAll(async () => {
    own = await startRedis({ destructive: true });
    const tier = (quota: number) => ({
      limits: [{ requests: 100, per: '1m', mode: 'shadow' }],
      account_limits: [{ requests: 100, per: '1m' }],
      quota: { requests: quota, per: 'day' },
      scopes: ['*'],
    });
    file = writeConfig(
      baseConfig({
        admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
        failure_policy: 'fail_open_local',
        // max_wait_ms well above timeout_ms: on a loaded machine this process's own stalls are not
        // counted as Redis' silence (redis/deadline.ts), so silence must be given room to show first.
        store: { redis: { url: own.url }, timeout_ms: 300, max_wait_ms: 3000, cache: { ttl: '1m' } },
        tiers: { metered: tier(6), bulk: tier(1000) },
        upstreams: { app: { targets: [upstream.url] } },
        routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      }),
    );
    gateway = await startGateway(file);
  }, 30_000);

  afterAll(async () => {
    own?.resume();
    await gateway?.stop();
    await own?.stop();
    if (file) removeConfig(file);
  });

  it('applies the quota locally from what Redis last reported; what it admits then is not added to Redis (README)', async () => {
    const local = adminApi(gateway.adminUrl);
    const metered = await createKey(local, { name: 'm', tier: 'metered', account: 'fallback' });
    const bulk = await createKey(local, { name: 'b', tier: 'bulk', account: 'fallback-bulk' });
    const get = async (key: string) => (await send(`${gateway.url}/x`, { headers: { 'x-api-key': key } })).status;
    for (const key of [metered.key, metered.key, bulk.key, bulk.key]) expect(await get(key)).toBe(200); // Redis counts 2 each
    own.pause();
    const meteredStatuses: number[] = [];
    const bulkStatuses: number[] = [];
    try {
      // A call may find Redis merely late rather than silent: that one is a 503, never a local decision.
      // Eight decisions are asked for, however many such 503s come first.
      while (meteredStatuses.filter((status) => status !== 503).length < 8 && meteredStatuses.length < 12) meteredStatuses.push(await get(metered.key));
      const refused = await send(`${gateway.url}/x`, { headers: { 'x-api-key': metered.key } });
      expect(expectEnvelope(refused, 429, 'rate_limit_exceeded').details).toMatchObject({ limit: 6, window: 'calendar day' });
      expect(await metricSumOf(gateway, 'sluice_ratelimit_fallback_active')).toBe(1); // from here on no call reaches Redis
      for (let i = 0; i < 10; i++) bulkStatuses.push(await get(bulk.key));
    } finally {
      own.resume();
    }
    const decided = meteredStatuses.filter((status) => status !== 503);
    expect(meteredStatuses.length - decided.length).toBeLessThanOrEqual(2);
    expect(decided.slice(0, 5)).toEqual([200, 200, 200, 200, 429]); // one replica: its share is what Redis had left, 4
    expect(decided.slice(4).every((status) => status === 429)).toBe(true);
    expect(bulkStatuses).toEqual(repeat(200, 10));

    await waitFor(async () => (await metricSumOf(gateway, 'sluice_ratelimit_fallback_active')) === 0, 10_000);
    const usage = (await local('GET', `/v1/keys/${bulk.id}/usage`)).json;
    expect(usage.quota.used).toBe(2); // the 10 admitted while Redis was away are lost to the quota
  }, 30_000);
});

async function metricSumOf(gateway: TestGateway, name: string): Promise<number> {
  const text = await (await request(`${gateway.adminUrl}/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}
