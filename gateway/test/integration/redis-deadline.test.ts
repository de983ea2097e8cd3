import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisClientType } from '@redis/client';
import { closeRedisClient, type RedisClient } from '../../src/redis/client';
import { RedisBusyError, RedisDeadline, RedisSilentError } from '../../src/redis/deadline';
import { gatewayRedisClient, startRedis, type TestRedis } from '../support/redis';

// The request path's bound on Redis calls (redis/deadline.ts), against a real redis-server: answered
// calls pass through; a frozen Redis fails every outstanding call once it has been silent for
// timeout_ms since that call began, oldest first; a Redis that answers others (its PINGs) while this
// call waits fails it as busy at max_wait_ms; a late answer to a call already failed changes nothing.

const TIMEOUT_MS = 300;
const MAX_WAIT_MS = 1200;
/** How late a judgement may come on a loaded CI machine (the bound is a timer plus one loop turn). */
const SLACK_MS = 400;

let redis: TestRedis;
let client: RedisClient;
let deadline: RedisDeadline;

beforeAll(async () => {
  redis = await startRedis({ destructive: true });
  client = await gatewayRedisClient({ url: redis.url });
  deadline = new RedisDeadline(client, { url: redis.url, key_prefix: '' }, TIMEOUT_MS, MAX_WAIT_MS);
});

afterAll(async () => {
  redis?.resume();
  deadline?.close();
  if (client) await closeRedisClient(client);
  await redis?.stop();
});

/** One command on the gateway's (standalone) client. */
const command = (...args: string[]): Promise<unknown> => (client as RedisClientType).sendCommand(args);

/** A call under the deadline, with when it settled and how. */
async function timed<T>(call: () => Promise<T>): Promise<{ value?: T; error?: unknown; startedAt: number; settledAt: number }> {
  const startedAt = performance.now();
  try {
    const value = await deadline.run('k', call);
    return { value, startedAt, settledAt: performance.now() };
  } catch (error) {
    return { error, startedAt, settledAt: performance.now() };
  }
}

it('passes answers (and error replies) through, for many calls at once', async () => {
  const results = await Promise.all(Array.from({ length: 500 }, (_, i) => deadline.run('k', () => command('ECHO', `${i}`))));
  expect(results).toEqual(Array.from({ length: 500 }, (_, i) => `${i}`));
  await expect(deadline.run('k', () => command('NOSUCHCOMMAND'))).rejects.toThrow(/unknown command/i);
});

it('fails every outstanding call of a frozen Redis once it has been silent for timeout_ms since the call began, oldest first', async () => {
  await command('PING'); // Redis answered just now
  redis.pause();
  try {
    const first = timed(() => command('PING'));
    await sleep(100);
    const second = timed(() => command('PING'));
    await sleep(100);
    const third = timed(() => command('PING'));
    const calls = await Promise.all([first, second, third]);
    for (const call of calls) {
      expect(call.error).toBeInstanceOf(RedisSilentError);
      const took = call.settledAt - call.startedAt;
      expect(took).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
      expect(took).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    }
    expect(calls[0].settledAt).toBeLessThanOrEqual(calls[1].settledAt);
    expect(calls[1].settledAt).toBeLessThanOrEqual(calls[2].settledAt);
  } finally {
    redis.resume();
  }
  // The answers that arrive now, to calls already failed, are dropped; new calls are answered.
  await expect(deadline.run('k', () => command('ECHO', 'back'))).resolves.toBe('back');
});

it('fails a call as busy at max_wait_ms while Redis answers others, and not before', async () => {
  // BLPOP holds the gateway connection (later calls wait behind it); the pulse's PINGs on a connection
  // of their own are answered all along, so Redis is not silent: only this call's wait is too long.
  const blocked = timed(() => command('BLPOP', 'deadline:never', '0'));
  const call = await blocked;
  expect(call.error).toBeInstanceOf(RedisBusyError);
  const took = call.settledAt - call.startedAt;
  expect(took).toBeGreaterThanOrEqual(MAX_WAIT_MS - 5);
  expect(took).toBeLessThan(MAX_WAIT_MS + SLACK_MS);
  // Free the connection (the BLPOP's late answer is dropped), and the next call is answered.
  const other = await gatewayRedisClient({ url: redis.url });
  await (other as RedisClientType).sendCommand(['RPUSH', 'deadline:never', 'x']);
  await closeRedisClient(other);
  await expect(deadline.run('k', () => command('ECHO', 'after'))).resolves.toBe('after');
});

it('judges a call by its own start when the judgement was set for an older call (answered since)', async () => {
  // The older call is answered at once; the newer one, on a frozen Redis, fails at its own timeout,
  // neither at the older one's (too early) nor later.
  await deadline.run('k', () => command('PING'));
  redis.pause();
  try {
    await sleep(150);
    const late = await timed(() => command('PING'));
    expect(late.error).toBeInstanceOf(RedisSilentError);
    expect(late.settledAt - late.startedAt).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(late.settledAt - late.startedAt).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  } finally {
    redis.resume();
  }
  await expect(deadline.run('k', () => command('ECHO', 'ok'))).resolves.toBe('ok');
});
