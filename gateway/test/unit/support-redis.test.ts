// Tests of the Redis test helper itself: real redis-server processes over real sockets.
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { freePort } from '../support/ports';
import { ping, redisCli, startRedis, TestRedis } from '../support/redis';

const started: TestRedis[] = [];
const clients: Redis[] = [];

// These tests pause and kill servers, so they always start their own (never SLUICE_TEST_REDIS_URL's).
async function ownRedis(): Promise<TestRedis> {
  const redis = await startRedis({ destructive: true });
  started.push(redis);
  return redis;
}

function client(redis: TestRedis): Redis {
  const c = new Redis(redis.port, redis.host, { enableOfflineQueue: true, maxRetriesPerRequest: 1 });
  clients.push(c);
  return c;
}

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await Promise.all(started.map((r) => r.stop()));
});

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the promise's value, or 'pending' if it has not settled within ms. */
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  try {
    return await Promise.race([promise, pending]);
  } finally {
    clearTimeout(timer);
  }
}

test('two servers are independent processes on different ports', async () => {
  const [a, b] = await Promise.all([ownRedis(), ownRedis()]);
  expect(a.owned).toBe(true);
  expect(a.url).toBe(`redis://127.0.0.1:${a.port}`);
  expect(a.port).not.toBe(b.port);
  expect(a.port).not.toBe(6379);
  expect(a.pid).not.toBe(b.pid);

  await client(a).set('k', 'in-a');
  expect(await client(b).get('k')).toBeNull();
  expect(await client(a).get('k')).toBe('in-a');
});

test('runs without persistence and answers redis-cli', async () => {
  const redis = await ownRedis();
  const info = await redisCli(redis.port, 'INFO', 'server');
  expect(info).toContain('redis_version:');
  expect(info).toContain(`tcp_port:${redis.port}`);
  expect(await redisCli(redis.port, 'CONFIG', 'GET', 'save')).toBe('save\n');
  expect(await redisCli(redis.port, 'CONFIG', 'GET', 'appendonly')).toBe('appendonly\nno');
});

test('pause blocks commands until resume', async () => {
  const redis = await ownRedis();
  const c = client(redis);
  expect(await c.ping()).toBe('PONG');

  redis.pause();
  const reply = c.ping();
  expect(await settledWithin(reply, 500)).toBe('pending');

  redis.resume();
  expect(await settledWithin(reply, 5000)).toBe('PONG');
});

test('kill, then restart comes back empty on the same port', async () => {
  const redis = await ownRedis();
  const { port } = redis;
  const oldPid = redis.pid!;
  expect(await redisCli(port, 'SET', 'k', 'v')).toBe('OK');

  await redis.kill();
  expect(isRunning(oldPid)).toBe(false);
  expect(await ping(port, 500)).toBe(false);

  await redis.restart();
  expect(redis.port).toBe(port);
  expect(redis.pid).not.toBe(oldPid);
  expect(await ping(port, 500)).toBe(true);
  expect(await redisCli(port, 'DBSIZE')).toBe('0');
});

test('stop removes the process, is idempotent, and a paused server still stops', async () => {
  const redis = await ownRedis();
  const pid = redis.pid!;
  redis.pause();

  await redis.stop();
  expect(isRunning(pid)).toBe(false);
  expect(await ping(redis.port, 500)).toBe(false);
  await expect(redis.stop()).resolves.toBeUndefined();
  expect(() => redis.pause()).toThrow(/not running/);
});

test('SLUICE_TEST_REDIS_URL is used for non-destructive suites only, and is never stopped', async () => {
  const shared = await ownRedis(); // stands in for the external instance
  const saved = process.env.SLUICE_TEST_REDIS_URL;
  process.env.SLUICE_TEST_REDIS_URL = shared.url;
  try {
    const external = await startRedis();
    expect(external).toMatchObject({ url: shared.url, host: '127.0.0.1', port: shared.port, owned: false });
    expect(() => external.pause()).toThrow(/destructive/);
    await expect(external.kill()).rejects.toThrow(/destructive/);
    await external.stop();
    expect(await ping(shared.port, 500)).toBe(true);

    const own = await ownRedis();
    expect(own.owned).toBe(true);
    expect(own.port).not.toBe(shared.port);
  } finally {
    if (saved === undefined) delete process.env.SLUICE_TEST_REDIS_URL;
    else process.env.SLUICE_TEST_REDIS_URL = saved;
  }
});

test('a redis-server left behind by a dead test process is killed on the next start', async () => {
  // A pid that surely belongs to no live process: a child that has already exited.
  const dead = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => dead.once('exit', resolve));

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-redis-${dead.pid}-`));
  const port = await freePort();
  let orphan: ChildProcess | undefined;
  try {
    // prettier-ignore
    orphan = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', dir, '--pidfile', path.join(dir, 'redis.pid'), '--logfile', path.join(dir, 'redis.log'),
    ], { stdio: 'ignore' });
    const orphanExit = new Promise((resolve) => orphan!.once('exit', resolve));
    for (let i = 0; i < 100 && !(await ping(port, 200)); i++) await sleep(50);
    for (let i = 0; i < 100 && !fs.existsSync(path.join(dir, 'redis.pid')); i++) await sleep(50);

    await ownRedis();
    expect(await settledWithin(orphanExit, 5000)).not.toBe('pending');
    expect(fs.existsSync(dir)).toBe(false);
  } finally {
    if (orphan && orphan.exitCode === null && orphan.signalCode === null) {
      orphan.kill('SIGKILL');
      await new Promise((resolve) => orphan!.once('exit', resolve));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
