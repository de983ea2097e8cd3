import type { Logger } from 'pino';
import type { Config, RedisConfig } from './config/schema';
import { createLogger } from './log';
import { FailedKeyGuard } from './ratelimit/failed-key-guard';
import { LocalKeyEvents, type KeyEvents } from './keys/events';
import type { Limiter } from './ratelimit/limiter';
import { MemoryKeyStore } from './keys/memory-store';
import { MemoryLimiter } from './ratelimit/memory-limiter';
import { createRedisClient, type RedisClient } from './redis/client';
import { RedisDeadline } from './redis/deadline';
import { ReplicaHeartbeat } from './ratelimit/heartbeat';
import { RedisKeyEvents } from './keys/redis-events';
import { RedisKeyStore } from './keys/redis-store';
import { RedisLimiter } from './ratelimit/redis-limiter';
import { ResilientLimiter } from './ratelimit/resilient-limiter';
import type { KeyStore } from './keys/types';

/** Everything that keeps state: keys, rate-limit counters, failed-key counts; and how key changes spread. */
export interface Backends {
  readonly keyStore: KeyStore;
  readonly keyEvents: KeyEvents;
  readonly limiter: Limiter;
  readonly failedKeys: FailedKeyGuard;
  close(): Promise<void>;
}

/**
 * The CLI's way to the Redis key store (key commands, `store init`, the test support): opens it (its
 * calls bounded as the gateway's are), waits for it (throws when it cannot be reached), runs `use`,
 * closes it. `events` announce changes to the replicas.
 */
export async function withRedisKeyStore<T>(config: Config, use: (store: RedisKeyStore, events: KeyEvents) => Promise<T>): Promise<T> {
  const settings = config.store.redis;
  if (!settings) throw new Error('no store.redis in this config');
  const silent = createLogger('silent');
  // The CLI says in one line when it cannot reach Redis (logConnectionErrors at level silent).
  const { deadline, keyStore, keyEvents } = openRedisKeyParts(config, settings, silent);
  try {
    if (!(await connectKeyStore(keyStore, silent, Math.max(config.store.timeout_ms, 3000)))) {
      throw new Error('cannot reach the Redis key store named in the config');
    }
    return await use(keyStore, keyEvents);
  } finally {
    deadline.close();
    await keyStore.close();
  }
}

/**
 * The one place that picks the backend. With Redis, one client serves the key store, the limiter
 * (behind the failure policy), the replica heartbeat and the failed-key guard.
 */
export function openBackends(config: Config, log: Logger): Backends {
  const settings = config.store.redis;
  if (!settings) {
    const limiter = new MemoryLimiter();
    return {
      keyStore: new MemoryKeyStore(),
      keyEvents: new LocalKeyEvents(),
      limiter,
      failedKeys: new FailedKeyGuard(config.rate_limiting.failed_keys),
      close: () => limiter.close(),
    };
  }
  const { client, deadline, keyStore, keyEvents } = openRedisKeyParts(config, settings, log);
  const prefix = settings.key_prefix;
  const heartbeat = new ReplicaHeartbeat(client, `${prefix}replicas`, config.store.replicas_hint, deadline);
  heartbeat.start();
  const limiter = new ResilientLimiter(new RedisLimiter(client, prefix, deadline), new MemoryLimiter(), {
    policy: config.failure_policy,
    liveReplicas: () => heartbeat.liveReplicas,
    probe: () => client.ping(),
    log,
  });
  return {
    keyStore,
    keyEvents,
    limiter,
    failedKeys: new FailedKeyGuard(config.rate_limiting.failed_keys, { client, prefix }),
    close: async () => {
      await keyEvents.close();
      await limiter.close();
      deadline.close();
      await heartbeat.stop();
      await keyStore.close(); // closes the shared client last
    },
  };
}

/** One Redis client (its errors logged) with the key store and key-change events on it. */
function openRedisKeyParts(config: Config, settings: RedisConfig, log: Logger) {
  const client: RedisClient = createRedisClient(settings, { timeoutMs: config.store.timeout_ms });
  logConnectionErrors(client, log);
  const deadline = new RedisDeadline(client, settings, config.store.timeout_ms, config.store.max_wait_ms);
  const keyStore = new RedisKeyStore(client, settings.key_prefix, deadline);
  const keyEvents = new RedisKeyEvents(client, settings, config.store.timeout_ms, log);
  return { client, deadline, keyStore, keyEvents };
}

/** What the primary of `serve --workers N` needs for the key API it serves on the admin port. */
export interface KeyApiBackends {
  readonly keyStore: KeyStore;
  readonly keyEvents: KeyEvents;
  /** Reads keys' usage (cost 0); never limits a request. */
  readonly limiter: Limiter;
  close(): Promise<void>;
}

/**
 * The primary's own Redis clients: it is a replica of the key store (the key API), not of the request
 * path, so it neither beats as a replica nor subscribes to key events (it has no key cache).
 */
export function openKeyApiBackends(config: Config, log: Logger): KeyApiBackends {
  const settings = config.store.redis;
  if (!settings) throw new Error('no store.redis in this config');
  const { client, deadline, keyStore, keyEvents } = openRedisKeyParts(config, settings, log);
  return {
    keyStore,
    keyEvents,
    limiter: new RedisLimiter(client, settings.key_prefix, deadline),
    close: async () => {
      await keyEvents.close();
      deadline.close();
      await keyStore.close(); // closes the client
    },
  };
}

/**
 * Without an 'error' listener a connection error would throw (and crash the process). Each new cause
 * is logged once, as text (StoreHealth reports the outage); a Cluster reports its nodes' errors apart.
 */
function logConnectionErrors(client: RedisClient, log: Logger): void {
  let last: string | undefined;
  const onError = (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    if (message === last) return;
    last = message;
    log.warn({ err: message }, 'Redis connection error');
  };
  client.on('error', onError);
  client.on('node-error', onError);
  client.on('ready', () => (last = undefined));
  client.on('node-ready', () => (last = undefined));
}

/** Waits (bounded) for Redis at start-up; a gateway still starts without it and serves cached keys later. */
export async function connectKeyStore(store: KeyStore, log: Logger, waitMs = 5000): Promise<boolean> {
  try {
    await store.connect(waitMs);
    return true;
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'Redis is not reachable yet; uncached keys get 503 until it is');
    return false;
  }
}
