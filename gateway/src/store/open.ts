import type { Logger } from 'pino';
import type { Config } from '../config/schema';
import { MemoryKeyStore } from './memory/key-store';
import { createRedisClient, waitUntilReady } from './redis/client';
import { RedisKeyStore } from './redis/key-store';
import type { KeyStore } from './types';

/** The one place that picks the backend: Redis when `store.redis` is configured, else the embedded memory store. */
export function openKeyStore(config: Config): KeyStore {
  const redis = config.store.redis;
  if (!redis) return new MemoryKeyStore();
  return new RedisKeyStore(createRedisClient(redis, config.store.timeout_ms), redis.key_prefix);
}

/** Waits (bounded) for Redis at start-up; a gateway still starts without it and serves cached keys later. */
export async function connectKeyStore(store: KeyStore, log: Logger, waitMs = 5000): Promise<boolean> {
  if (!(store instanceof RedisKeyStore)) return true;
  try {
    await waitUntilReady(store.client, waitMs);
    return true;
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'Redis is not reachable yet; uncached keys get 503 until it is');
    return false;
  }
}
