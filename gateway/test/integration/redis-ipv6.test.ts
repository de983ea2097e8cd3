import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/loader';
import { closeRedisClient, createRedisClient, waitUntilReady } from '../../src/redis/client';
import { baseConfig } from '../support/gateway';
import { freePort } from '../support/ports';
import { waitFor } from '../support/wait';

// Redis nodes written `[v6]:port` (Cluster nodes, Sentinels) validate in the config and connect:
// the config and the client read them with one parser (config/schema.ts parseHostPort). Before,
// the client kept the brackets and could never connect.

let server: ChildProcess;
let dir: string;
let port: number;

beforeAll(async () => {
  port = await freePort();
  dir = mkdtempSync(path.join(tmpdir(), 'sluice-redis-v6-'));
  // prettier-ignore
  server = spawn('redis-server', [
    '--port', String(port), '--bind', '::1', '--cluster-announce-ip', '::1', '--save', '', '--appendonly', 'no', '--dir', dir,
    '--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'),
  ], { stdio: 'ignore' });
  const admin = new Redis({ host: '::1', port, retryStrategy: () => 50 });
  admin.on('error', () => undefined); // until the server listens
  try {
    await new Promise((resolve) => admin.once('ready', resolve));
    await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    await waitFor(async () => ((await admin.call('CLUSTER', 'INFO')) as string).includes('cluster_state:ok'), 10_000);
  } finally {
    admin.disconnect();
  }
});

afterAll(() => {
  server?.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('a Cluster node given as [::1]:port validates and is reached', async () => {
  const config = parseConfig(
    stringify(
      baseConfig({
        store: { redis: { cluster: { nodes: [`[::1]:${port}`] } }, timeout_ms: 1000 },
        tiers: { t: { limits: [], scopes: ['*'] } },
        upstreams: { app: { targets: ['http://127.0.0.1:9'] } },
        routes: [{ name: 'all', match: { path_prefix: '/' }, upstream: 'app' }],
      }),
    ),
  );
  const client = createRedisClient(config.store.redis!, { timeoutMs: 1000 });
  client.on('error', () => undefined);
  try {
    await waitUntilReady(client, 5000);
    await client.set('{v6}:probe', 'ok');
    expect(await client.get('{v6}:probe')).toBe('ok');
  } finally {
    await closeRedisClient(client);
  }
});
