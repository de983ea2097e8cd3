import http from 'node:http';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { ADMIN_TOKEN, adminApi, createKey } from '../support/admin';
import { baseConfig, removeConfig, runCli, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { send } from '../support/http';
import { changed, scrape, seriesKey } from '../support/metrics';
import { redisCli, startRedis, type TestRedis } from '../support/redis';
import { startUpstream, type TestUpstream } from '../support/upstream';
import { waitFor } from '../support/wait';

// `sluice serve --workers 2`: a primary (admin port) and two worker processes sharing the public port,
// against a real Redis. Each request below goes on a connection of its own, so node:cluster's
// round-robin hands them to both workers; the access log names the worker that answered.

const KEY = 'sk_test_workers_unlimited_000000';
const LIMITED_KEY = 'sk_test_workers_limited_0000000';
const LIMIT = 10;
const FAILED_TOKENS = 3;

let redis: TestRedis;
let upstream: TestUpstream;
let configFile: string;
let gateway: TestGateway;

function gatewayConfig(extraRoutes: Record<string, unknown>[] = [], trustedProxies: string[] = []): Record<string, unknown> {
  return baseConfig({
    admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN, failed_tokens: { max_attempts: FAILED_TOKENS, per: '1m', block_for: '1m' } },
    trusted_proxies: trustedProxies,
    // A long cache: a revoked key stops working quickly only if the key event reached the worker.
    store: { redis: { url: redis.url }, timeout_ms: 500, cache: { ttl: '60s' } },
    lifecycle: { drain_delay: '1s', grace: '5s' },
    tiers: {
      t: { limits: [], scopes: ['*'] },
      limited: { limits: [{ requests: LIMIT, per: '1m' }], scopes: ['*'] },
    },
    upstreams: { app: { targets: [upstream.url] } },
    routes: [...extraRoutes, { name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
    keys: [
      { name: 'k', tier: 't', key: KEY },
      { name: 'limited', tier: 'limited', key: LIMITED_KEY },
    ],
  });
}

// The one place this suite sets up its gateway (a Redis of its own, emptied between suites).
beforeAll(async () => {
  redis = await startRedis({ destructive: true });
  upstream = await startUpstream();
  configFile = writeConfig(gatewayConfig());
  gateway = await startGateway(configFile, process.env, 30_000, undefined, ['--workers', '2']);
}, 60_000);

afterAll(async () => {
  await gateway?.stop('SIGKILL');
  await upstream?.close();
  await redis?.stop();
  if (configFile) removeConfig(configFile);
});

/** One GET on a connection of its own (no keep-alive), so successive requests spread over the workers. */
function getFresh(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${gateway.url}${path}`, { agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
  });
}

type LogLine = { msg: string; worker?: number; pid?: number; request_id?: string; route?: string; status?: number; [field: string]: unknown };

function logLines(): LogLine[] {
  return gateway.output.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LogLine);
}

/** The workers whose access log shows the requests whose id starts with `prefix`. */
function workersThatAnswered(prefix: string): Set<number> {
  return new Set(logLines().filter((l) => l.msg === 'request' && l.request_id?.startsWith(prefix)).map((l) => l.worker!));
}

/** Sends `count` requests on fresh connections at once; ids `${prefix}-N`. */
async function burst(prefix: string, count: number, path = '/ok', key = KEY) {
  const answers = await Promise.all(
    Array.from({ length: count }, (_, i) => getFresh(path, { 'x-api-key': key, 'x-request-id': `${prefix}-${i}` })),
  );
  // The access log line is written just after the answer: wait until each is in our copy of stdout.
  await waitFor(() => logLines().filter((l) => l.msg === 'request' && l.request_id?.startsWith(`${prefix}-`)).length === count, 5000, {
    what: `access log lines for ${prefix}`,
  });
  return answers;
}

function livePids(): number[] {
  const started = logLines().filter((l) => l.msg === 'worker started').map((l) => l.pid!);
  const exited = new Set(logLines().filter((l) => l.msg === 'worker exited; starting a new one').map((l) => l.pid!));
  return started.filter((pid) => !exited.has(pid));
}

async function readyz(): Promise<{ status: number; reason?: string }> {
  const res = await send(`${gateway.adminUrl}/readyz`);
  return { status: res.status, reason: res.json?.error?.details?.reason };
}

describe('serve --workers 2', () => {
  it('answers on both workers, each a replica with its own heartbeat in Redis', async () => {
    const answers = await burst('both', 20);
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(workersThatAnswered('both-').size).toBe(2);

    const pids = livePids();
    expect(pids).toHaveLength(2);
    expect(pids).not.toContain(gateway.pid);
    // Heartbeat ids are hostname-pid-random: one per worker, none for the primary.
    await waitFor(async () => (await redisCli(redis.port, 'ZCARD', 'sluice:replicas')) === '2', 5000, { what: 'two heartbeats' });
    const members = (await redisCli(redis.port, 'ZRANGE', 'sluice:replicas', '0', '-1')).split('\n');
    expect(members.map((m) => Number(m.split('-').at(-2))).sort()).toEqual([...pids].sort());
  });

  it('holds a key to its limit exactly across the workers', async () => {
    const answers = await burst('limit', LIMIT * 3, '/ok', LIMITED_KEY);
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT);
    expect(statuses.filter((s) => s === 429)).toHaveLength(LIMIT * 2);
    expect(workersThatAnswered('limit-').size).toBe(2);
  });

  it('adds up every worker in /metrics, and counts the admin API on the primary', async () => {
    const before = await scrape(gateway.adminUrl);
    await burst('metrics', 30);
    expect(workersThatAnswered('metrics-').size).toBe(2);
    expect((await adminApi(gateway.adminUrl, 'wrong-token')('GET', '/v1/keys')).status).toBe(401);
    const after = await scrape(gateway.adminUrl);

    expect(changed(before, after, 'sluice_requests_total')).toEqual({ [seriesKey('sluice_requests_total', { route: 'all', method: 'GET', status: '200' })]: 30 });
    expect(changed(before, after, 'sluice_errors_total')).toEqual({ [seriesKey('sluice_errors_total', { code: 'invalid_admin_token', status: '401' })]: 1 });
    // Gauges: each as it declares (min: every worker hears key events; sum: nothing in flight now).
    expect(after.get('sluice_key_events_subscribed')).toBe(1);
    expect(after.get('sluice_in_flight_requests')).toBe(0);
    expect(after.get('sluice_ratelimit_fallback_active')).toBe(0);
  });

  it('stops a key revoked through the primary on every worker at once (key events reach each)', async () => {
    const admin = adminApi(gateway.adminUrl);
    const created = await createKey(admin, { name: 'revoke-me', tier: 't' });
    // Each worker caches the key (a 60 s cache: only the key event can drop it before then).
    expect((await burst('cached', 10, '/ok', created.key)).every((a) => a.status === 200)).toBe(true);
    expect(workersThatAnswered('cached-').size).toBe(2);

    expect((await admin('DELETE', `/v1/keys/${created.id}`)).status).toBe(200);
    await waitFor(async () => (await burst(`revoked-${Date.now()}`, 6, '/ok', created.key)).every((a) => a.status === 401), 3000, {
      what: 'the revoked key refused by both workers',
    });
  });

  it('reloads every worker on SIGHUP to the primary (a new route answers on all of them)', async () => {
    // SIGHUP alone (the file unchanged, so the watcher has nothing to see): each worker reloads once.
    const workerReloads = () => logLines().filter((l) => l.msg === 'config reloaded' && l.worker !== undefined).length;
    const reloadedBefore = workerReloads();
    gateway.process.kill('SIGHUP');
    await waitFor(() => workerReloads() === reloadedBefore + 2, 5000, { what: 'two worker reloads after SIGHUP' });

    const primaryReloads = () => logLines().filter((l) => l.msg === 'config reloaded; every worker reloads it').length;
    const primaryBefore = primaryReloads();
    const before = await scrape(gateway.adminUrl);
    // Only this reload's lines count: both workers logged reloads already (the SIGHUP above).
    const workerLinesBefore = logLines().filter((l) => l.msg === 'config reloaded' && l.worker !== undefined).length;
    writeFileSync(configFile, stringify(gatewayConfig([{ name: 'added', match: { path_prefix: '/added' }, upstream: 'app' }])));
    gateway.process.kill('SIGHUP');
    await waitFor(
      () => new Set(logLines().filter((l) => l.msg === 'config reloaded' && l.worker !== undefined).slice(workerLinesBefore).map((l) => l.worker)).size === 2,
      5000,
      { what: 'both workers reloaded' },
    );
    const answers = await burst('added', 20, '/added/ok');
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const lines = logLines().filter((l) => l.msg === 'request' && l.request_id?.startsWith('added-'));
    expect(new Set(lines.map((l) => l.route))).toEqual(new Set(['added']));
    expect(new Set(lines.map((l) => l.worker)).size).toBe(2);
    // Counted once per reload of this replica (the primary's), however many workers applied it. The file
    // watcher may have seen the change as well as SIGHUP: count the primary's reloads from its log.
    expect(primaryReloads()).toBeGreaterThan(primaryBefore);
    const ok = seriesKey('sluice_config_reloads_total', { result: 'ok' });
    let reloads: Record<string, number> = {};
    await waitFor(
      async () => {
        const counted = primaryReloads() - primaryBefore; // the watcher may reload during the scrape
        reloads = changed(before, await scrape(gateway.adminUrl), 'sluice_config_reloads_total');
        return reloads[ok] === counted && counted === primaryReloads() - primaryBefore;
      },
      5000,
      { what: 'the reload counted once per reload' },
    ).catch(() => undefined);
    expect(reloads).toEqual({ [ok]: primaryReloads() - primaryBefore });
  });

  it('reloads every worker when the file changes: one watcher, in the primary', async () => {
    const reloadsBy = () => {
      const counts = new Map<string, number>();
      for (const l of logLines().filter((l) => l.msg === 'config reloaded' || l.msg === 'config reloaded; every worker reloads it')) {
        const who = l.worker === undefined ? 'primary' : `worker ${l.worker}`;
        counts.set(who, (counts.get(who) ?? 0) + 1);
      }
      return counts;
    };
    // The previous test's change may still be picked up by the watcher (it polls once a second).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const primaryBefore = reloadsBy().get('primary') ?? 0;
    writeFileSync(configFile, stringify(gatewayConfig([{ name: 'watched', match: { path_prefix: '/watched' }, upstream: 'app' }])));
    await waitFor(() => [...reloadsBy().values()].length === 3 && [...reloadsBy().values()].every((n) => n === primaryBefore + 1), 5000, {
      what: 'the primary and both workers reloaded once more',
    });
    await burst('watched', 20, '/watched/ok');
    const lines = logLines().filter((l) => l.msg === 'request' && l.request_id?.startsWith('watched-'));
    expect(new Set(lines.map((l) => l.route))).toEqual(new Set(['watched']));
    expect(new Set(lines.map((l) => l.worker)).size).toBe(2);
    // Workers reload only when told: as many times as the primary, never on their own.
    await new Promise((resolve) => setTimeout(resolve, 1500)); // a watcher of their own would have fired by now
    expect([...reloadsBy().values()]).toEqual([primaryBefore + 1, primaryBefore + 1, primaryBefore + 1]);
  });

  it('applies a reloaded trusted_proxies on the primary too: its admin API blocks wrong tokens per forwarded client', async () => {
    const primaryReloads = () => logLines().filter((l) => l.msg === 'config reloaded; every worker reloads it').length;
    await new Promise((resolve) => setTimeout(resolve, 1500)); // the previous test's change seen by the watcher first
    const before = primaryReloads();
    writeFileSync(configFile, stringify(gatewayConfig([], ['127.0.0.1'])));
    gateway.process.kill('SIGHUP');
    await waitFor(() => primaryReloads() > before, 5000, { what: 'the primary reloaded' });

    // The test's own address is now a trusted proxy: each X-Forwarded-For client has a budget of its own.
    const guesser = adminApi(gateway.adminUrl, 'wrong-token');
    const forwardedFor = (address: string) => ({ 'x-forwarded-for': address });
    for (let i = 0; i < FAILED_TOKENS; i++) expect((await guesser('GET', '/v1/keys', undefined, forwardedFor('198.51.100.7'))).status).toBe(401);
    expect((await adminApi(gateway.adminUrl)('GET', '/v1/keys', undefined, forwardedFor('198.51.100.7'))).status).toBe(429);
    // Another client behind the same proxy is not the guesser (before the fix the primary kept the
    // trusted_proxies it started with and counted everyone as 127.0.0.1).
    expect((await adminApi(gateway.adminUrl)('GET', '/v1/keys', undefined, forwardedFor('198.51.100.8'))).status).toBe(200);

    // Back to no trusted proxy: X-Forwarded-For is ignored again, and 127.0.0.1 itself was never blocked.
    const restored = primaryReloads();
    writeFileSync(configFile, stringify(gatewayConfig()));
    gateway.process.kill('SIGHUP');
    await waitFor(() => primaryReloads() > restored, 5000, { what: 'the primary reloaded again' });
    expect((await adminApi(gateway.adminUrl)('GET', '/v1/keys', undefined, forwardedFor('198.51.100.7'))).status).toBe(200);
  });

  it('is ready only while every worker is: a store without its marker makes all of them not ready', async () => {
    expect(await readyz()).toEqual({ status: 200, reason: undefined });
    const marker = await redisCli(redis.port, 'GET', 'sluice:marker');
    await redisCli(redis.port, 'DEL', 'sluice:marker');
    await waitFor(async () => (await readyz()).reason === 'marker_missing', 5000, { what: 'readyz: marker_missing' });
    await redisCli(redis.port, 'SET', 'sluice:marker', marker);
    await waitFor(async () => (await readyz()).status === 200, 5000, { what: 'ready again' });
  });

  it('replaces a killed worker, and is not ready until the new one is', async () => {
    const [victim, survivor] = livePids();
    const notReadySeen: string[] = [];
    const watching = waitFor(
      async () => {
        const state = await readyz();
        if (state.status !== 200) notReadySeen.push(state.reason!);
        return notReadySeen.length > 0 && state.status === 200;
      },
      15_000,
      { what: 'not ready, then ready again' },
    );
    process.kill(victim, 'SIGKILL');
    await watching;
    expect(notReadySeen).toContain('worker_starting');

    const exitLine = logLines().find((l) => l.msg === 'worker exited; starting a new one');
    expect(exitLine).toMatchObject({ pid: victim, signal: 'SIGKILL' });
    const pids = livePids();
    expect(pids).toHaveLength(2);
    expect(pids).toContain(survivor);
    expect(pids).not.toContain(victim);
    // The new worker serves too.
    await burst('replaced', 20);
    expect(workersThatAnswered('replaced-').size).toBe(2);
  });

  it('backs off when replacements keep dying, and serves on two workers again', async () => {
    const exits = () => logLines().filter((l) => l.msg === 'worker exited; starting a new one');
    for (let i = 0; i < 2; i++) {
      const before = exits().length;
      process.kill(livePids().at(-1)!, 'SIGKILL'); // the newest: it has lived less than 10 s
      await waitFor(() => exits().length === before + 1, 5000, { what: 'the exit logged' });
      await waitFor(() => livePids().length === 2, 15_000, { what: 'a replacement started' });
    }
    const delays = exits().map((l) => l.restart_in_ms as number);
    expect(delays).toHaveLength(3);
    expect(delays[2]).toBeGreaterThanOrEqual(2 * delays[0]);
    await waitFor(async () => (await readyz()).status === 200, 15_000, { what: 'ready again' });
    await burst('after-backoff', 20);
    expect(workersThatAnswered('after-backoff-').size).toBe(2);
  });

  it('does not start when a worker cannot listen (exit 1, every process gone)', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    const file = writeConfig({ ...gatewayConfig(), listen: { host: '127.0.0.1', port } });
    try {
      // runCli resolves once stdout closes: when the workers (which share it) are gone too.
      const result = await runCli(['serve', '--config', file, '--workers', '2']);
      expect(result.code).toBe(1);
      expect(result.stdout).toContain('a worker failed to start');
      expect(result.stdout + result.stderr).toContain('EADDRINUSE');
    } finally {
      taken.close();
      removeConfig(file);
    }
  });

  it('drains on SIGTERM: not ready at once, the request in flight completes, every process exits 0', async () => {
    const slow = getFresh('/slow?ms=1500', { 'x-api-key': KEY });
    await waitFor(() => upstream.activeResponses() === 1, 5000, { what: 'the slow request at the upstream' });
    gateway.process.kill('SIGTERM');
    await waitFor(async () => (await readyz()).reason === 'draining', 900, { what: 'readyz: draining within drain_delay' });
    expect((await slow).status).toBe(200);
    expect(await gateway.exited).toBe(0);
    const stopped = logLines().filter((l) => l.msg === 'stopped');
    expect(stopped.filter((l) => l.worker !== undefined)).toHaveLength(2);
    expect(stopped.filter((l) => l.role === 'primary')).toHaveLength(1);
  });
});

describe('serve --workers 2, drained while a worker starts', () => {
  it('drains a worker forked just before SIGTERM too: exit 0, nothing killed', async () => {
    const second = await startGateway(configFile, process.env, 30_000, undefined, ['--workers', '2']);
    try {
      const lines = () => second.output.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LogLine);
      const started = () => lines().filter((l) => l.msg === 'worker started');
      process.kill(started()[0].pid!, 'SIGKILL');
      await waitFor(() => started().length === 3, 5000, { what: 'a replacement forked' });
      second.process.kill('SIGTERM'); // while the replacement still loads
      expect(await second.exited).toBe(0);
      const stopped = lines().filter((l) => l.msg === 'stopped' && l.worker !== undefined).map((l) => l.pid);
      expect(stopped).toContain(started()[2].pid);
    } finally {
      await second.stop('SIGKILL');
    }
  }, 30_000);
});

describe('--workers refused where it cannot work', () => {
  let embedded: string;
  let withRedis: string;
  beforeAll(() => {
    const rest = {
      tiers: { t: { limits: [] } },
      upstreams: { app: { targets: ['http://127.0.0.1:9'] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
    };
    embedded = writeConfig(baseConfig(rest));
    withRedis = writeConfig(baseConfig({ ...rest, store: { redis: { url: 'redis://127.0.0.1:9' } } }));
  });
  afterAll(() => {
    removeConfig(embedded);
    removeConfig(withRedis);
  });

  it('refuses more than one worker with the embedded store, in serve and in config check', async () => {
    for (const args of [['serve', '--config', embedded, '--workers', '2'], ['config', 'check', embedded, '--workers', '3']]) {
      const result = await runCli(args);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/--workers \d needs store\.redis: .*each rate limit would be multiplied/);
    }
  });

  it('accepts one worker with the embedded store, and several with Redis (config check)', async () => {
    expect(await runCli(['config', 'check', embedded, '--workers', '1'])).toMatchObject({ code: 0 });
    expect(await runCli(['config', 'check', withRedis, '--workers', '4'])).toMatchObject({ code: 0 });
    expect(await runCli(['config', 'check', withRedis, '--workers', 'auto'])).toMatchObject({ code: 0 });
  });

  it('refuses a worker count that is not a whole number from 1 or auto', async () => {
    for (const bad of ['0', '-1', '1.5', 'many', '']) {
      const result = await runCli(['config', 'check', withRedis, '--workers', bad]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('--workers must be a whole number from 1 or "auto"');
    }
  });
});
