import { LRUCache } from 'lru-cache';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Config } from '../config/schema';
import { tooManyFailedAttempts, type GatewayError } from '../errors/envelope';
import { failedKeyBlocks } from '../metrics/registry';
import type { RedisClient } from '../redis/client';

type Settings = Config['rate_limiting']['failed_keys'];

/**
 * Brute-force guard: counts failed key attempts per client address (shared through Redis, with a
 * memory "insurance" limiter when Redis fails) and blocks an address that goes over. Valid traffic
 * never pays for it: Redis is only touched after a failed lookup, and a block, once seen, is cached
 * here so a blocked address is refused without any store call.
 */
export class FailedKeyGuard {
  private readonly limiter: RateLimiterRedis | RateLimiterMemory;
  private readonly blockedUntil = new LRUCache<string, number>({ max: 100_000 });

  constructor(
    private readonly settings: Settings,
    redis?: { client: RedisClient; prefix: string },
  ) {
    const options = {
      keyPrefix: `${redis?.prefix ?? ''}failed-keys`,
      points: settings.max_attempts,
      duration: Math.ceil(settings.per / 1000),
      blockDuration: Math.ceil(settings.block_for / 1000),
    };
    this.limiter = redis
      ? new RateLimiterRedis({ ...options, storeClient: redis.client, useRedisPackage: true, rejectIfRedisNotReady: true, insuranceLimiter: new RateLimiterMemory(options) })
      : new RateLimiterMemory(options);
  }

  /** Refuses an address whose block is known here, without touching any store. */
  checkNotBlocked(address: string): void {
    const until = this.blockedUntil.get(address);
    if (until === undefined) return;
    const msLeft = until - Date.now();
    if (msLeft > 0) throw this.refusal(msLeft, 0);
    this.blockedUntil.delete(address);
  }

  /** Counts a failed attempt; throws the 429 once the address is over the limit. */
  async recordFailure(address: string): Promise<void> {
    try {
      await this.limiter.consume(address);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      this.blockedUntil.set(address, Date.now() + rejection.msBeforeNext, { ttl: rejection.msBeforeNext });
      throw this.refusal(rejection.msBeforeNext, rejection.remainingPoints);
    }
  }

  private refusal(msLeft: number, remaining: number): GatewayError {
    failedKeyBlocks.inc();
    return tooManyFailedAttempts(msLeft, {
      'x-ratelimit-limit': String(this.settings.max_attempts),
      'x-ratelimit-remaining': String(Math.max(0, remaining)),
      'x-ratelimit-reset': String(Math.ceil((Date.now() + msLeft) / 1000)),
    });
  }
}
