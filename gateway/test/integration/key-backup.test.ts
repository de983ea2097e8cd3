import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { baseConfig, initStore, removeConfig, runCli, startGateway, writeConfig, type TestGateway } from '../support/gateway';
import { expectEnvelope, send } from '../support/http';
import { redisCli, startRedis, type TestRedis } from '../support/redis';
import { startUpstream, type TestUpstream } from '../support/upstream';

// `sluice keys export | import`: a backup of one Redis key store (hashes and metadata, never a
// plaintext key) restores another, emptied one — its keys, their states and its marker.

let source: TestRedis;
let target: TestRedis;
let upstream: TestUpstream;
let gateway: TestGateway;
let sourceConfig: string;
let targetConfig: string;

const config = (redisUrl: string) =>
  writeConfig(
    baseConfig({
      store: { redis: { url: redisUrl }, timeout_ms: 1000, cache: { ttl: '60s' } },
      tiers: { free: { limits: [{ requests: 100, per: '1m' }], scopes: ['*'] } },
      upstreams: { app: { targets: [upstream.url] } },
      routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
    }),
  );

beforeAll(async () => {
  [source, target, upstream] = await Promise.all([startRedis({ destructive: true }), startRedis({ destructive: true }), startUpstream()]);
  sourceConfig = config(source.url);
  targetConfig = config(target.url);
  gateway = await startGateway(targetConfig); // serves from the target store
  await initStore(sourceConfig); // no gateway on the source: initialised the way an operator would
});

afterAll(async () => {
  await gateway?.stop();
  await upstream?.close();
  await Promise.all([source?.stop(), target?.stop()]);
  removeConfig(sourceConfig);
  removeConfig(targetConfig);
});

async function cli(...args: string[]) {
  const out = await runCli(args);
  if (out.code !== 0) throw new Error(`sluice ${args.join(' ')} → ${out.code}: ${out.stderr}`);
  return out.stdout;
}

const create = async (name: string) => JSON.parse(await cli('keys', 'create', '--config', sourceConfig, '--tier', 'free', '--name', name, '--json'));
const call = (key: string) => send(`${gateway.url}/ok`, { headers: { 'x-api-key': key } });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it('exports keys as JSON lines without a plaintext key, and import restores keys, states and the marker', async () => {
  const active = await create('active');
  const revoked = await create('revoked');
  await cli('keys', 'revoke', revoked.id, '--config', sourceConfig);
  const rotating = await create('rotating');
  const rotated = JSON.parse(await cli('keys', 'rotate', rotating.id, '--config', sourceConfig, '--json'));

  const backup = await cli('keys', 'export', '--config', sourceConfig);
  const lines = backup.trim().split('\n').map((line) => JSON.parse(line));
  expect(lines[0]).toMatchObject({ format: 'sluice-keys/1' });
  expect(lines.slice(1).map((r) => r.id).sort()).toEqual([active.id, revoked.id, rotating.id].sort());
  for (const record of lines.slice(1)) expect(record.secret_hashes[0]).toMatch(/^[0-9a-f]{64}$/);
  for (const secret of [active.key, revoked.key, rotating.key, rotated.key]) expect(backup).not.toContain(secret);
  const file = path.join(path.dirname(sourceConfig), 'keys.jsonl');
  writeFileSync(file, backup);

  // The target store loses its data while the gateway runs: not ready, unknown keys get 503 (not 401).
  await redisCli(target.port, 'FLUSHALL');
  await sleep(1500);
  expect(expectEnvelope(await send(`${gateway.adminUrl}/readyz`), 503, 'service_unavailable').details).toEqual({ reason: 'marker_missing' });
  expectEnvelope(await call(active.key), 503, 'service_unavailable');

  expect(await cli('keys', 'import', file, '--config', targetConfig)).toContain('Imported 3 of 3 keys.');
  expect(await redisCli(target.port, 'EXISTS', 'sluice:marker')).toBe('1');
  await sleep(1500);
  expect((await send(`${gateway.adminUrl}/readyz`)).status).toBe(200);
  expect((await call(active.key)).status).toBe(200);
  expectEnvelope(await call(revoked.key), 401, 'invalid_api_key');
  expect((await call(rotated.key)).status).toBe(200);
  expect((await call(rotating.key)).status).toBe(200); // still in its rotation grace period
  expect(await cli('keys', 'list', '--config', targetConfig, '--json')).toBe(await cli('keys', 'list', '--config', sourceConfig, '--json'));

  // Importing the same backup again changes nothing and succeeds.
  expect(await cli('keys', 'import', file, '--config', targetConfig)).toContain('Imported 3 of 3 keys.');
});

it('refuses a record whose secret opens another key, and a malformed backup as a whole', async () => {
  const taken = await create('taken');
  const backup = (await cli('keys', 'export', '--config', sourceConfig)).trim().split('\n');
  const header = backup[0];
  const record = JSON.parse(backup.find((line) => line.includes(taken.id))!);
  const dir = path.dirname(sourceConfig);

  // Same secret under another id: the existing key keeps it.
  const clash = path.join(dir, 'clash.jsonl');
  writeFileSync(clash, `${header}\n${JSON.stringify(record)}\n${JSON.stringify({ ...record, id: 'key_impostor' })}\n`);
  const out = await runCli(['keys', 'import', clash, '--config', targetConfig]);
  expect(out.code).toBe(1);
  expect(out.stderr).toContain('key_impostor');
  expect(out.stdout).toContain('Imported 1 of 2 keys.');
  expect((await call(taken.key)).status).toBe(200);

  const broken = path.join(dir, 'broken.jsonl');
  writeFileSync(broken, `${header}\n${JSON.stringify({ ...record, id: 'key_new_one' })}\n{"id":"key_x","secret_hashes":["nothex"]}\n`);
  const refused = await runCli(['keys', 'import', broken, '--config', targetConfig]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain('line 3');
  expect(refused.stderr).toContain('nothing was imported');
  expect(await redisCli(target.port, 'EXISTS', 'sluice:key:{key_new_one}')).toBe('0');
});

it('moves the id set of a store written before the key API (key-ids) to the sorted index, once', async () => {
  const id = 'key_from_older_version';
  const hash = 'a'.repeat(64);
  await redisCli(target.port, 'HSET', `sluice:key:{${id}}`, 'id', id, 'name', 'old', 'tier', 'free', 'status', 'active', 'created_at', '2026-01-01T00:00:00.000Z', 'secret_hashes', JSON.stringify([hash]));
  await redisCli(target.port, 'SET', `sluice:secret:${hash}`, id);
  await redisCli(target.port, 'SADD', 'sluice:key-ids', id);
  const listed = await cli('keys', 'list', '--config', targetConfig, '--json');
  expect(listed).toContain(`"id":"${id}"`);
  expect(await redisCli(target.port, 'EXISTS', 'sluice:key-ids')).toBe('0');
  expect(await redisCli(target.port, 'ZSCORE', 'sluice:key-index', id)).toBe('0');
});
