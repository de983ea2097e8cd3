import type { Logger } from 'pino';
import { rateLimitFallbackActive, rateLimitFallbackEngaged } from '../metrics/registry';
import type { LimitDecision, Limiter, LimitRequest } from './limiter';
import type { MemoryLimiter } from './memory/limiter';
import { StoreUnavailableError } from './types';

export type FailurePolicy = 'fail_open_local' | 'fail_closed';

/** No decision can be made: Redis is unavailable and the policy is fail_closed. */
export class LimiterUnavailableError extends Error {
  constructor() {
    super('rate limiter unavailable (Redis down, policy fail_closed)');
    this.name = 'LimiterUnavailableError';
  }
}

export interface ResilientOptions {
  policy: FailurePolicy;
  /** Live replicas last seen, for each replica's share of a limit while Redis is away. */
  liveReplicas: () => number;
  /** A cheap round trip (PING) that succeeds once Redis answers again. */
  probe: () => Promise<unknown>;
  log: Logger;
  failuresBeforeFallback?: number;
  probeIntervalMs?: number;
}

/**
 * The Redis limiter while Redis answers. After a few consecutive failures it stops asking Redis
 * (no request waits for another timeout), applies the failure policy, and probes Redis about once a
 * second until it answers; then Redis decides again. A single failure before that point is decided
 * by the policy too, so no request ever fails just because Redis blinked.
 */
export class ResilientLimiter implements Limiter {
  private consecutiveFailures = 0;
  private probeTimer?: NodeJS.Timeout;
  private probing = false;

  constructor(
    private readonly redis: Limiter,
    private readonly local: MemoryLimiter,
    private readonly options: ResilientOptions,
  ) {}

  get fallbackActive(): boolean {
    return this.probeTimer !== undefined;
  }

  async check(request: LimitRequest): Promise<LimitDecision> {
    if (!this.fallbackActive) {
      try {
        const decision = await this.redis.check(request);
        this.consecutiveFailures = 0;
        return decision;
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err;
        this.consecutiveFailures++;
        if (this.consecutiveFailures >= (this.options.failuresBeforeFallback ?? 3) && !this.fallbackActive) this.engage(err);
      }
    }
    return this.withoutRedis(request);
  }

  private withoutRedis(request: LimitRequest): Promise<LimitDecision> {
    if (this.options.policy === 'fail_closed') throw new LimiterUnavailableError();
    // This replica's share of each limit: together the replicas stay within it (rounding down).
    const replicas = Math.max(1, this.options.liveReplicas());
    return this.local.check({
      ...request,
      windows: request.windows.map((w) => ({ ...w, limit: Math.max(1, Math.floor(w.limit / replicas)) })),
    });
  }

  private engage(cause: Error): void {
    this.options.log.warn(
      { policy: this.options.policy, live_replicas: this.options.liveReplicas(), err: cause.message },
      'rate limiting without Redis: failure policy in force; probing Redis every second',
    );
    rateLimitFallbackActive.set(1);
    rateLimitFallbackEngaged.inc();
    this.probeTimer = setInterval(() => void this.probe(), this.options.probeIntervalMs ?? 1000);
    this.probeTimer.unref();
  }

  private async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      await this.options.probe();
      this.recover();
    } catch {
      // still away
    } finally {
      this.probing = false;
    }
  }

  private recover(): void {
    clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    this.consecutiveFailures = 0;
    rateLimitFallbackActive.set(0);
    this.options.log.info('Redis answers again: rate limits are decided in Redis');
  }

  async close(): Promise<void> {
    clearInterval(this.probeTimer);
    this.probeTimer = undefined;
    await this.local.close();
  }
}
