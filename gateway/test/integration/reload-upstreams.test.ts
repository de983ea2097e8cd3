import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { baseConfig, removeConfig, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send } from '../support/http';
import { waitFor } from '../support/wait';
import { startUpstream, type TestUpstream } from '../support/upstream';

// A reload reconciles upstreams: one whose settings did not change keeps its pools and breakers (an
// ejected target stays ejected: a reload is no way around a breaker); a changed one starts afresh.

const KEY = 'sk_test_reload_upstreams_0000';

let upstream: TestUpstream;
let gateway: TestGateway;
let configFile: string;

const config = (limit: number, timeoutMs: number) =>
  baseConfig({
    tiers: { t: { limits: [{ requests: limit, per: '1m' }], scopes: ['*'] } },
    upstreams: { app: { targets: [upstream.url], timeout_ms: timeoutMs, breaker: { failures: 1, cooldown: '60s' } } },
    routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
    keys: [{ name: 'k', tier: 't', key: KEY }],
  });

beforeAll(async () => {
  upstream = await startUpstream();
  configFile = writeConfig(config(1000, 5000));
  gateway = await startGateway(configFile);
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  removeConfig(configFile);
});

async function reload(next: Record<string, unknown>): Promise<void> {
  const before = gateway.output.filter((line) => line.includes('"config reloaded"')).length;
  writeFileSync(configFile, stringify(next));
  gateway.process.kill('SIGHUP');
  await waitFor(async () => gateway.output.filter((line) => line.includes('"config reloaded"')).length > before, 5000);
}

const get = (path: string) => send(`${gateway.url}${path}`, { headers: { 'x-api-key': KEY } });

it('keeps an unchanged upstream (its ejected target stays ejected); a changed one starts afresh', async () => {
  expectEnvelope(await get('/reset-early'), 502, 'bad_gateway'); // one failure ejects it for 60 s
  expectEnvelope(await get('/ok'), 503, 'service_unavailable');

  await reload(config(2000, 5000)); // a tier changed, the upstream did not
  const afterTierChange = await get('/ok');
  expect(afterTierChange.status).toBe(503);

  await reload(config(2000, 4000)); // the upstream's own settings changed: new pools, new breakers
  const afterUpstreamChange = await get('/ok');
  expect(afterUpstreamChange.status).toBe(200);
  expect(afterUpstreamChange.headers['x-ratelimit-limit']).toBe('2000');
});
