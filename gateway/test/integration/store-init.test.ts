import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { baseConfig, removeConfig, runCli, spawnGateway, writeConfig, type TestGateway } from '../support/gateway';
import { ADMIN_TOKEN, adminApi, type AdminCall } from '../support/admin';
import { expectEnvelope, send, type SimpleResponse } from '../support/http';
import { redisCli, startRedis, startRedisCluster, startSentinelGroup, type TestRedis } from '../support/redis';
import { startUpstream, type TestUpstream } from '../support/upstream';
import { waitFor } from '../support/wait';
import { backupHeader } from '../../src/admin/backup';

// Key store safety (issue 18): only `sluice store init` and `sluice keys import` write a missing
// marker. A replica on an empty or emptied Redis stays not ready, answers uncached keys 503 (never a
// false 401) and refuses key changes, through a restart, until one of the two is run on purpose.

const SEED_KEY = 'sk_live_seed_key_from_the_config_0000000';

let redis: TestRedis;
let upstream: TestUpstream;
let gateway: TestGateway;
let configFile: string;
let admin: AdminCall;
let backupDir: string;

beforeAll(async () => {
  redis = await startRedis({ destructive: true });
  upstream = await startUpstream();
  configFile = writeConfig(
    baseConfig({
      // A short cache: after step 7's flush a key this replica cached must be asked of the store again.
      store: { redis: { url: redis.url }, timeout_ms: 1000, cache: { ttl: '300ms' } },
      admin: { host: '127.0.0.1', port: 0, token: ADMIN_TOKEN },
      tiers: { free: { limits: [], scopes: ['*'] } },
      upstreams: { app: { targets: [upstream.url] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      keys: [{ name: 'seed', tier: 'free', key: SEED_KEY }],
    }),
  );
  backupDir = mkdtempSync(path.join(tmpdir(), 'sluice-backup-'));
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  await redis?.stop();
  removeConfig(configFile);
  rmSync(backupDir, { recursive: true, force: true });
});

/** A replica on the store as it is: no `store init` first (the test support's startGateway runs one). */
async function startReplica(): Promise<void> {
  gateway = await spawnGateway(configFile);
  admin = adminApi(gateway.adminUrl);
}

const call = (key: string) => send(`${gateway.url}/ok`, { headers: { 'x-api-key': key } });
const readiness = () => send(`${gateway.adminUrl}/readyz`);
const waitReady = (ready: boolean) =>
  waitFor(async () => (await readiness()).status === (ready ? 200 : 503), 5000, { what: ready ? 'ready' : 'not ready', intervalMs: 100 });
const cli = (...args: string[]) => runCli([...args, '--config', configFile]);
const createWithCli = () => cli('keys', 'create', '--tier', 'free', '--name', 'cli key', '--json');

function expectMarkerMissing(res: SimpleResponse): void {
  expect(expectEnvelope(res, 503, 'service_unavailable').details).toEqual({ reason: 'marker_missing' });
}

/** What the key store holds (records, secrets, index, marker); replica heartbeats and counters aside. */
const keyStoreContents = async () => (await redisCli(redis.port, 'KEYS', 'sluice:[kms]*')).split('\n').filter(Boolean).sort();

/** Every key change is refused while the marker is missing, naming both ways out; nothing is written. */
async function expectChangesRefused(existingId: string): Promise<void> {
  const before = await keyStoreContents();
  const out = await createWithCli();
  expect(out.code).toBe(1);
  expect(out.stdout).toBe('');
  expect(out.stderr).toContain('sluice store init');
  expect(out.stderr).toContain('sluice keys import');

  const answers = [
    await admin('POST', '/v1/keys', { name: 'api key', tier: 'free' }),
    await admin('PATCH', `/v1/keys/${existingId}`, { name: 'renamed' }),
    await admin('POST', `/v1/keys/${existingId}/rotate`),
    await admin('DELETE', `/v1/keys/${existingId}`),
  ];
  for (const res of answers) {
    const error = expectEnvelope(res, 503, 'service_unavailable');
    expect(error.details).toEqual({ reason: 'marker_missing' });
    expect(error.message).toContain('sluice store init');
    expect(error.message).toContain('sluice keys import');
    expect(res.headers['retry-after']).toBe('1');
  }
  for (const command of [['rotate', existingId], ['revoke', existingId]]) expect((await cli('keys', ...command)).code).toBe(1);
  expect(await redisCli(redis.port, 'EXISTS', 'sluice:marker')).toBe('0');
  expect(await keyStoreContents()).toEqual(before);
}

it('a fresh store, an emptied one and a restarted replica stay not ready and answer 503 until `store init` or `keys import`', async () => {
  // 1. serve on a fresh Redis: nothing written, not ready, the seed key (not in the store) is a 503.
  await startReplica();
  expectMarkerMissing(await readiness());
  expectMarkerMissing(await readiness());
  expectEnvelope(await call(SEED_KEY), 503, 'service_unavailable');
  expectEnvelope(await call('sk_live_never_issued_00000000000000000'), 503, 'service_unavailable');
  await expectChangesRefused('key_0000000000000000');
  expect(await keyStoreContents()).toEqual([]); // serve seeded nothing and wrote no marker
  expect(gateway.output.some((line) => line.includes('KEY STORE MARKER MISSING') && line.includes('sluice store init'))).toBe(true);

  // 2. store init: the seed key and the marker; the replica becomes ready; keys can be made.
  const init = await cli('store', 'init');
  expect(init.stderr).toBe('');
  expect(init.code).toBe(0);
  expect(init.stdout).toContain('1 seed key(s)');
  await waitReady(true);
  expect((await call(SEED_KEY)).status).toBe(200);
  expectEnvelope(await call('sk_live_never_issued_00000000000000000'), 401, 'invalid_api_key');
  const cliKey = JSON.parse((await createWithCli()).stdout) as { id: string; key: string };
  const apiRes = await admin('POST', '/v1/keys', { name: 'api key', tier: 'free' });
  expect(apiRes.status).toBe(201);
  const apiKey = apiRes.json as { id: string; key: string };

  // 3. store init again: a no-op that says so and changes nothing.
  const snapshot = async () => [await redisCli(redis.port, 'GET', 'sluice:marker'), await keyStoreContents()];
  const before = await snapshot();
  const again = await cli('store', 'init');
  expect(again.code).toBe(0);
  expect(again.stdout).toContain('already initialised');
  expect(await snapshot()).toEqual(before);

  const backup = path.join(backupDir, 'keys.jsonl');
  const exported = await cli('keys', 'export');
  expect(exported.code).toBe(0);
  writeFileSync(backup, exported.stdout);

  // 4. FLUSHALL: not ready; changes refused; valid keys the replica has not cached answer 503, not 401.
  await redisCli(redis.port, 'FLUSHALL');
  await waitReady(false);
  expectMarkerMissing(await readiness());
  await expectChangesRefused(cliKey.id);
  expectEnvelope(await call(cliKey.key), 503, 'service_unavailable'); // never used: not cached
  expectEnvelope(await call(apiKey.key), 503, 'service_unavailable');

  // 5. A replica restarted on the flushed store: still not ready, still 503; its seed keys wait.
  await gateway.stop();
  await startReplica();
  expectMarkerMissing(await readiness());
  for (const key of [SEED_KEY, cliKey.key, apiKey.key]) expectEnvelope(await call(key), 503, 'service_unavailable');
  await expectChangesRefused(cliKey.id);
  expect(await keyStoreContents()).toEqual([]);

  // 6. keys import of the backup: ready again, the keys work again (none was cached by this replica).
  const imported = await runCli(['keys', 'import', backup, '--config', configFile]);
  expect(imported.code).toBe(0);
  expect(imported.stdout).toContain('Imported 3 of 3 keys');
  await waitReady(true);
  for (const key of [SEED_KEY, cliKey.key, apiKey.key]) expect((await call(key)).status).toBe(200);
  expect((await admin('PATCH', `/v1/keys/${cliKey.id}`, { name: 'renamed' })).status).toBe(200);

  // 7. Emptied again, and this time declared new: ready; the old keys are gone, so a 401 is now right.
  await redisCli(redis.port, 'FLUSHALL');
  await waitReady(false);
  expect((await cli('store', 'init')).code).toBe(0);
  await waitReady(true);
  expectEnvelope(await call(apiKey.key), 401, 'invalid_api_key'); // its cache entry (300 ms) is long expired
  expect((await call(SEED_KEY)).status).toBe(200); // store init seeded it again
}, 90_000);

it('a replica that started on an unmarked store creates its seed keys once the store is restored (here: an empty backup)', async () => {
  await gateway.stop();
  await redisCli(redis.port, 'FLUSHALL');
  await startReplica();
  expectEnvelope(await call(SEED_KEY), 503, 'service_unavailable');
  const empty = path.join(backupDir, 'empty.jsonl');
  writeFileSync(empty, `${backupHeader()}\n`);
  const imported = await runCli(['keys', 'import', empty, '--config', configFile]);
  expect(imported.stdout).toContain('Imported 0 of 0 keys');
  await waitReady(true);
  // The health watch saw the marker and seeded the config's key (nobody else did: no store init ran).
  await waitFor(async () => (await call(SEED_KEY)).status === 200, 5000, { what: 'the seed key to work', intervalMs: 100 });
  expect(gateway.output.some((line) => line.includes('seeded API key from config'))).toBe(true);
}, 30_000);

/** A config for the store only: `redis` settings, or none for the embedded store. */
const storeConfig = (redisSettings?: Record<string, unknown>) =>
  writeConfig(
    baseConfig({
      ...(redisSettings ? { store: { redis: redisSettings } } : {}),
      tiers: { free: { limits: [], scopes: [] } },
      upstreams: { app: { targets: [upstream.url] } },
      routes: [{ name: 'r', match: { path_prefix: '/' }, upstream: 'app' }],
    }),
  );

it('store init on the embedded store says there is nothing to do', async () => {
  const file = storeConfig();
  try {
    const out = await runCli(['store', 'init', '--config', file]);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('embedded in-memory key store');
  } finally {
    removeConfig(file);
  }
});

it('store init on an unreachable Redis fails with exit 1 and says so', async () => {
  const dead = await startRedis({ destructive: true });
  const url = dead.url;
  await dead.stop();
  const file = storeConfig({ url });
  try {
    const out = await runCli(['store', 'init', '--config', file]);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain('cannot reach the Redis key store');
  } finally {
    removeConfig(file);
  }
}, 30_000);

describe('store init on every topology the config can name', () => {
  const initTwice = async (redisSettings: Record<string, unknown>, markerExists: () => Promise<boolean>) => {
    const file = storeConfig(redisSettings);
    try {
      expect(await markerExists()).toBe(false);
      const first = await runCli(['store', 'init', '--config', file]);
      expect(first.stderr).toBe('');
      expect(first.stdout).toContain('Initialised the key store');
      expect(await markerExists()).toBe(true);
      const second = await runCli(['store', 'init', '--config', file]);
      expect(second.code).toBe(0);
      expect(second.stdout).toContain('already initialised');
    } finally {
      removeConfig(file);
    }
  };

  it('Redis Cluster', async () => {
    const cluster = await startRedisCluster();
    try {
      const nodes = cluster.nodes.map((n) => `${n.host}:${n.port}`);
      // The marker lives on whichever master owns its slot: ask each (-c follows redirects).
      const markerExists = async () => (await redisCli(cluster.nodes[0].port, '-c', 'EXISTS', 'sluice:marker')) === '1';
      await initTwice({ cluster: { nodes } }, markerExists);
    } finally {
      await cluster.stop();
    }
  }, 90_000);

  it('Redis Sentinel', async () => {
    const group = await startSentinelGroup();
    try {
      const markerExists = async () => (await redisCli(group.master.port, 'EXISTS', 'sluice:marker')) === '1';
      await initTwice({ sentinel: { name: group.masterName, sentinels: group.sentinels.map((s) => `${s.host}:${s.port}`) } }, markerExists);
    } finally {
      await group.stop();
    }
  }, 180_000);
});
