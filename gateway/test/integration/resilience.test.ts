import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { Agent } from 'undici';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send } from '../support/http';
import { closedPort } from '../support/ports';
import { metricValue } from '../support/scenarios';
import { startUpstream, type TestUpstream } from '../support/upstream';

// Breaker, retries, load shedding, CORS and hot reload, on a real gateway process.

const KEY = 'sk_test_resilience_00000000000';
let a: TestUpstream;
let b: TestUpstream;
let gateway: TestGateway;
let configFile: string;
let deadPort: number;

function config(tierLimit: number) {
  return baseConfig({
    listen: { host: '127.0.0.1', port: 0, max_in_flight: 4 },
    tiers: { t: { limits: [{ requests: tierLimit, per: '1m' }], scopes: ['*'] } },
    upstreams: {
      flaky: { targets: [a.url], breaker: { failures: 3, cooldown: '2s', on_5xx: true } },
      pair: { targets: [`http://127.0.0.1:${deadPort}`, b.url], breaker: { failures: 100, cooldown: '1s' } },
      both: { targets: [a.url, b.url] },
    },
    routes: [
      { name: 'flaky', match: { path_prefix: '/flaky' }, upstream: 'flaky', retries: 0 },
      { name: 'pair', match: { path_prefix: '/pair' }, upstream: 'pair', retries: 1 },
      { name: 'both', match: { path_prefix: '/both' }, upstream: 'both', retries: 3 },
      {
        name: 'app',
        match: { path_prefix: '/app', methods: ['GET', 'POST'] },
        upstream: 'both',
        cors: { allow_origins: ['https://ui.example.com'], allow_headers: ['content-type', 'x-api-key'], max_age: '5m' },
      },
    ],
    keys: [{ name: 'k', tier: 't', key: KEY }],
  });
}

beforeAll(async () => {
  [a, b] = await Promise.all([startUpstream(), startUpstream()]);
  deadPort = await closedPort();
  configFile = writeConfig(config(1000));
  gateway = await startGateway(configFile);
});

afterAll(async () => {
  await gateway?.stop();
  await Promise.all([a?.close(), b?.close()]);
  removeConfig(configFile);
});

beforeEach(() => {
  a.reset();
  b.reset();
});

const withKey = { 'x-api-key': KEY };

describe('circuit breaker', () => {
  it('opens after N failures, answers 503 with Retry-After without connecting, half-opens and closes on recovery', async () => {
    for (let i = 0; i < 3; i++) expect((await send(`${gateway.url}/flaky/status?code=500`, { headers: withKey })).status).toBe(500);
    expect(a.requests).toHaveLength(3);

    const refused = await send(`${gateway.url}/flaky/ok`, { headers: withKey });
    expectEnvelope(refused, 503, 'service_unavailable');
    expect(['1', '2']).toContain(refused.headers['retry-after']);
    expect(a.requests).toHaveLength(3); // the upstream never saw it

    await new Promise((resolve) => setTimeout(resolve, 2_100));
    expect((await send(`${gateway.url}/flaky/ok`, { headers: withKey })).status).toBe(200); // the trial
    expect((await send(`${gateway.url}/flaky/ok`, { headers: withKey })).status).toBe(200); // closed again
    expect(a.requests).toHaveLength(5);
  });

  it('a failed trial opens it again for another cooldown', async () => {
    for (let i = 0; i < 3; i++) await send(`${gateway.url}/flaky/status?code=503`, { headers: withKey });
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    expect((await send(`${gateway.url}/flaky/status?code=500`, { headers: withKey })).status).toBe(500); // failed trial
    expectEnvelope(await send(`${gateway.url}/flaky/ok`, { headers: withKey }), 503, 'service_unavailable');
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    expect((await send(`${gateway.url}/flaky/ok`, { headers: withKey })).status).toBe(200);
  });
});

describe('retries', () => {
  it('retries a GET that could not connect on the healthy target, with the same request id', async () => {
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await send(`${gateway.url}/pair/headers`, { headers: { ...withKey, 'x-request-id': `retry-${i}` } }));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(b.requests).toHaveLength(6);
    for (const r of answers) expect(r.json.headers['x-request-id']).toBe(r.headers['x-request-id']);
  });

  it('never retries a POST whose bytes reached the upstream', async () => {
    const res = await send(`${gateway.url}/both/reset-early`, { method: 'POST', headers: withKey, body: 'payload' });
    expectEnvelope(res, 502, 'bad_gateway');
    expect(a.requests.length + b.requests.length).toBe(1);
  });

  it('does not retry a GET that failed after reaching the upstream (not a connect failure)', async () => {
    const res = await send(`${gateway.url}/both/reset-early`, { headers: withKey });
    expectEnvelope(res, 502, 'bad_gateway');
    expect(a.requests.length + b.requests.length).toBe(1);
  });
});

describe('load shedding', () => {
  it('answers 503 with Retry-After: 1 past max_in_flight, and recovers', async () => {
    const agent = new Agent({ connections: 20 });
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => send(`${gateway.url}/both/slow?ms=600`, { headers: withKey, dispatcher: agent })),
    );
    const shed = answers.filter((r) => r.status === 503);
    expect(answers.filter((r) => r.status === 200)).toHaveLength(4);
    expect(shed).toHaveLength(6);
    for (const r of shed) {
      expectEnvelope(r, 503, 'service_unavailable');
      expect(r.headers['retry-after']).toBe('1');
    }
    expect((await send(`${gateway.url}/both/ok`, { headers: withKey })).status).toBe(200);
    await agent.close();
  });
});

describe('CORS', () => {
  it('answers a preflight itself, without a key, for an allowed origin', async () => {
    const res = await send(`${gateway.url}/app/items`, {
      method: 'OPTIONS',
      headers: { origin: 'https://ui.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://ui.example.com');
    expect(res.headers['access-control-allow-methods']).toBe('GET, POST');
    expect(res.headers['access-control-allow-headers']).toBe('content-type, x-api-key');
    expect(res.headers['access-control-max-age']).toBe('300');
    expect(a.requests.length + b.requests.length).toBe(0);
  });

  it('refuses a preflight from another origin', async () => {
    const res = await send(`${gateway.url}/app/items`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
    expectEnvelope(res, 403, 'forbidden');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('adds the CORS headers to proxied and error responses alike', async () => {
    const ok = await send(`${gateway.url}/app/ok`, { headers: { ...withKey, origin: 'https://ui.example.com' } });
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe('https://ui.example.com');
    const denied = await send(`${gateway.url}/app/ok`, { headers: { origin: 'https://ui.example.com' } });
    expectEnvelope(denied, 401, 'missing_api_key');
    expect(denied.headers['access-control-allow-origin']).toBe('https://ui.example.com');
    expect(denied.headers.vary).toBe('Origin');
  });
});

describe('hot reload', () => {
  it('applies a new tier limit under load with no failed request; a broken file leaves the old config serving', async () => {
    const before = await send(`${gateway.url}/both/ok`, { headers: withKey });
    expect(before.headers['x-ratelimit-limit']).toBe('1000');

    // Steady load of slow requests across the reload.
    const agent = new Agent({ connections: 3 });
    let stop = false;
    const statuses: number[] = [];
    const load = Promise.all(
      Array.from({ length: 3 }, async () => {
        while (!stop) statuses.push((await send(`${gateway.url}/both/slow?ms=150`, { headers: withKey, dispatcher: agent })).status);
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    writeFileSync(configFile, stringify(config(2000)));
    gateway.process.kill('SIGHUP');
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const after = await send(`${gateway.url}/both/ok`, { headers: withKey });
    expect(after.headers['x-ratelimit-limit']).toBe('2000');

    writeFileSync(configFile, 'tiers: { t: { limits: [ { requests: 5, per: 1 minute } ] } }\nroutes: nope\n');
    await new Promise((resolve) => setTimeout(resolve, 1_800)); // the file watch notices within ~1 s
    stop = true;
    await load;
    await agent.close();

    expect(statuses.length).toBeGreaterThan(10);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const still = await send(`${gateway.url}/both/ok`, { headers: withKey });
    expect(still.status).toBe(200);
    expect(still.headers['x-ratelimit-limit']).toBe('2000');
    const refusal = gateway.output.find((line) => line.includes('config reload refused'));
    expect(refusal).toBeDefined();
    expect(JSON.parse(refusal!).problems.join('\n')).toMatch(/routes: /);
    expect(await metricValue(gateway, 'sluice_config_reloads_total{result="failed"}')).toBe(1);
    expect(await metricValue(gateway, 'sluice_config_reloads_total{result="ok"}')).toBeGreaterThanOrEqual(1);
    writeFileSync(configFile, stringify(config(2000)));
  });
});
