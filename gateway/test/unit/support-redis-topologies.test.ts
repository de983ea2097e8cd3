// Tests of the cluster and sentinel helpers: real redis-server processes over loopback, no mocks.
import fs from 'node:fs';
import os from 'node:os';
import Redis, { Cluster } from 'ioredis';
import {
  ping,
  RedisAddress,
  redisCli,
  startRedisCluster,
  startSentinelGroup,
  TestRedisCluster,
  TestSentinelGroup,
} from '../support/redis';

const started: (TestRedisCluster | TestSentinelGroup)[] = [];
// Clients a test has not closed itself (it failed early).
const openClients = new Set<Redis | Cluster>();

afterAll(async () => {
  for (const c of openClients) c.disconnect();
  await Promise.all(started.map((t) => t.stop()));
});

// Exactly once per client: a second disconnect() leaves a 2 s ioredis timer that keeps jest from exiting.
function close(client: Redis | Cluster): void {
  openClients.delete(client);
  client.disconnect();
}

function track<T extends TestRedisCluster | TestSentinelGroup>(topology: T): T {
  started.push(topology);
  return topology;
}

function clusterClient(cluster: TestRedisCluster): Cluster {
  const client = new Cluster(cluster.nodes);
  openClients.add(client);
  return client;
}

// 100 keys with different hash tags, so they land in many slots on all three masters.
const KEYS = Array.from({ length: 100 }, (_, i) => i);
const key = (i: number, round: string) => `{tag${i}}:${round}`;
const value = (i: number, round: string) => `${round}-${i}`;

async function writeKeys(client: Cluster, round: string): Promise<void> {
  await Promise.all(KEYS.map((i) => client.set(key(i, round), value(i, round))));
}

async function expectKeys(client: Cluster, round: string): Promise<void> {
  const values = await Promise.all(KEYS.map((i) => client.get(key(i, round))));
  expect(values).toEqual(KEYS.map((i) => value(i, round)));
}

async function pidsOf(addresses: RedisAddress[]): Promise<number[]> {
  return Promise.all(
    addresses.map(async (a) => Number(/process_id:(\d+)/.exec(await redisCli(a.port, 'INFO', 'server'))![1])),
  );
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The helpers' temp dirs carry the owner's pid (see sweepLeftovers in redis.ts). */
function ourTempDirs(): string[] {
  return fs
    .readdirSync(os.tmpdir())
    .filter((name) => name.startsWith(`sluice-redis-${process.pid}-`))
    .sort();
}

async function expectAllGone(addresses: RedisAddress[], pids: number[], dirsBefore: string[]): Promise<void> {
  expect(pids.filter(isRunning)).toEqual([]);
  const answering = await Promise.all(addresses.map((a) => ping(a.port, 500)));
  expect(answering).toEqual(addresses.map(() => false));
  expect(ourTempDirs()).toEqual(dirsBefore);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('a cluster of 3 masters serves keys in many slots, and stop() leaves no process', async () => {
  const dirsBefore = ourTempDirs();
  const cluster = track(await startRedisCluster());
  expect(cluster.nodes).toHaveLength(3);
  expect(cluster.replicas).toEqual([]);
  expect(cluster.nodes.every((n) => n.host === '127.0.0.1' && n.port !== 6379)).toBe(true);
  await expect(cluster.killMaster(0)).rejects.toThrow(/withReplicas/);

  const client = clusterClient(cluster);
  await writeKeys(client, 'a');
  await expectKeys(client, 'a');
  // Every master holds some of the keys: the client really routed by slot.
  const sizes = (await Promise.all(cluster.nodes.map((n) => redisCli(n.port, 'DBSIZE')))).map(Number);
  expect(sizes.every((size) => size > 0)).toBe(true);
  expect(sizes.reduce((a, b) => a + b)).toBe(KEYS.length);

  const pids = await pidsOf(cluster.nodes);
  close(client);
  await cluster.stop();
  await expectAllGone(cluster.nodes, pids, dirsBefore);
  await expect(cluster.stop()).resolves.toBeUndefined();
});

test('with replicas, killMaster(0) promotes its replica and the client keeps reading and writing', async () => {
  const dirsBefore = ourTempDirs();
  const cluster = track(await startRedisCluster({ withReplicas: true }));
  expect(cluster.nodes).toHaveLength(3);
  expect(cluster.replicas).toHaveLength(3);
  for (const [i, replica] of cluster.replicas.entries()) {
    expect(await redisCli(replica.port, 'INFO', 'replication')).toContain(`master_port:${cluster.nodes[i].port}`);
  }
  const everything = [...cluster.nodes, ...cluster.replicas];
  const pids = await pidsOf(everything);

  const client = clusterClient(cluster);
  await writeKeys(client, 'before');
  // WAIT on the connections that carried the writes: each replica has acknowledged them,
  // so the failover may not lose any (without it, the last writes to the killed master could be lost).
  const acks = await Promise.all(client.nodes('master').map((node) => node.call('WAIT', '1', '5000')));
  expect(acks).toEqual([1, 1, 1]);

  await cluster.killMaster(0);
  expect(await ping(cluster.nodes[0].port, 500)).toBe(false);
  expect(await redisCli(cluster.replicas[0].port, 'INFO', 'replication')).toContain('role:master');

  await expectKeys(client, 'before');
  await writeKeys(client, 'after');
  await expectKeys(client, 'after');
  await expect(cluster.killMaster(0)).rejects.toThrow(/not running/);

  close(client);
  await cluster.stop();
  await expectAllGone(everything, pids, dirsBefore);
});

test('a sentinel group: ioredis follows failover() to the former replica, and stop() leaves no process', async () => {
  const dirsBefore = ourTempDirs();
  const group = track(await startSentinelGroup());
  expect(group.masterName).toBe('sluice-test');
  expect(group.sentinels).toHaveLength(3);
  expect(await group.currentMaster()).toEqual(group.master);
  const everything = [group.master, group.replica, ...group.sentinels];
  const pids = await pidsOf(everything);

  // failoverDetector: ioredis drops its connection on +switch-master; without it, it would keep
  // writing to the old master until the sentinels demote it (10-20 s after the failover).
  const client = new Redis({ sentinels: group.sentinels, name: group.masterName, failoverDetector: true });
  openClients.add(client);
  await client.set('before', '1');
  expect(await client.get('before')).toBe('1');
  expect(await redisCli(group.master.port, 'GET', 'before')).toBe('1');
  expect(await client.call('WAIT', '1', '5000')).toBe(1); // the replica has it: the failover keeps it

  const promoted = await group.failover();
  expect(promoted).toEqual(group.replica);
  expect(await group.currentMaster()).toEqual(group.replica);

  // The client notices the failover asynchronously: retry until a write lands on the new master (bounded).
  let attempts = 0;
  for (;;) {
    attempts++;
    await client.set('after', String(attempts));
    if ((await redisCli(group.replica.port, 'GET', 'after')) === String(attempts)) break;
    if (attempts >= 50) throw new Error('the client never wrote to the promoted replica');
    await sleep(200);
  }
  expect(await client.get('after')).toBe(String(attempts));
  expect(await client.get('before')).toBe('1');

  // On that reconnect ioredis disconnects its old failover-detector sentinel clients a second time,
  // which leaves a 2 s (disconnectTimeout) timer each: let them run out so jest can exit cleanly.
  await sleep(2_100);
  close(client);
  await group.stop();
  await expectAllGone(everything, pids, dirsBefore);
  await expect(group.stop()).resolves.toBeUndefined();
});
