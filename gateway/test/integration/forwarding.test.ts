import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { send } from '../support/http';
import { startUpstream, type TestUpstream } from '../support/upstream';

// Behind a trusted proxy (here: the loopback peer is trusted), and with two targets per upstream.

const KEY = 'sk_test_forwarding_012345678';
let first: TestUpstream;
let second: TestUpstream;
let gateway: TestGateway;
let configFile: string;

beforeAll(async () => {
  [first, second] = await Promise.all([startUpstream(), startUpstream()]);
  configFile = writeConfig(
    baseConfig({
      trusted_proxies: ['127.0.0.1', '10.0.0.0/8'],
      tiers: { t: { limits: [], scopes: ['*'] } },
      upstreams: { app: { targets: [first.url, second.url] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      keys: [{ name: 'k', tier: 't', key: KEY }],
    }),
  );
  gateway = await startGateway(configFile);
});

afterAll(async () => {
  await gateway?.stop();
  await Promise.all([first?.close(), second?.close()]);
  removeConfig(configFile);
});

it('spreads requests over the targets round-robin', async () => {
  const ports: string[] = [];
  for (let i = 0; i < 6; i++) {
    const res = await send(`${gateway.url}/ok`, { headers: { 'x-api-key': KEY } });
    ports.push(res.headers['x-upstream-port'] as string);
  }
  const a = String(first.port);
  const b = String(second.port);
  expect(new Set(ports)).toEqual(new Set([a, b]));
  for (let i = 1; i < ports.length; i++) expect(ports[i]).not.toBe(ports[i - 1]);
});

it("keeps a trusted proxy's forwarding headers, appends the peer, and logs the real client", async () => {
  const res = await send(`${gateway.url}/headers`, {
    headers: {
      'x-api-key': KEY,
      'x-forwarded-for': '203.0.113.50, 10.1.1.1',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'api.example.com',
      'x-request-id': 'trusted-proxy-test',
    },
  });
  expect(res.status).toBe(200);
  const seen = res.json.headers;
  expect(seen['x-forwarded-for']).toBe('203.0.113.50, 10.1.1.1, 127.0.0.1');
  expect(seen['x-forwarded-proto']).toBe('https');
  expect(seen['x-forwarded-host']).toBe('api.example.com');
  await new Promise((resolve) => setTimeout(resolve, 100));
  const line = gateway.output.find((l) => l.includes('"request_id":"trusted-proxy-test"'));
  expect(JSON.parse(line!).client).toBe('203.0.113.50');
});
