import type { Logger } from 'pino';
import { rateLimitFallbackActive, rateLimitFallbackEngaged } from '../metrics/registry';
import type { LimitDecision, Limiter, LimitRequest, WindowState } from './limiter';
import type { MemoryLimiter } from './memory-limiter';
import { StoreBusyError, StoreUnavailableError } from '../redis/errors';

export type FailurePolicy = 'fail_open_local' | 'fail_closed';

/** No decision can be made: Redis is away under fail_closed, or it answers too late to wait for. */
export class LimiterUnavailableError extends Error {
  constructor(message = 'rate limiter unavailable (Redis down, policy fail_closed)', options?: { cause?: unknown }) {
    super(message, options);
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

/** What Redis last said about a subject's windows, and when (this replica's clock). */
interface Report {
  windows: readonly WindowState[];
  atMs: number;
}

// How often reports older than their longest window are forgotten.
const REPORT_SWEEP_MS = 60_000;

/**
 * The Redis limiter while Redis answers: its decision stands, however busy this replica is (a late
 * answer is waited for, up to store.max_wait_ms, then 503 — see redis/deadline.ts). Only when Redis
 * is silent does the failure policy decide: after a few consecutive failures the limiter stops
 * asking Redis (no request waits for another timeout) and probes it about once a second until it
 * answers. A single failure before that point is decided by the policy too, so no request fails
 * just because Redis blinked.
 *
 * Local decisions start from what Redis last reported for the key: its remaining, divided among the
 * live replicas. So the switch itself admits nothing that Redis had already counted.
 */
export class ResilientLimiter implements Limiter {
  private consecutiveFailures = 0;
  private probeTimer?: NodeJS.Timeout;
  private probing = false;
  /** Counters the local limiter holds are not in Redis: forget them once Redis decides again. */
  private localUsed = false;
  private readonly reports = new Map<string, Report>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly redis: Limiter,
    private readonly local: MemoryLimiter,
    private readonly options: ResilientOptions,
  ) {
    this.sweeper = setInterval(() => this.forgetOldReports(), REPORT_SWEEP_MS);
    this.sweeper.unref();
  }

  get fallbackActive(): boolean {
    return this.probeTimer !== undefined;
  }

  // Not an async function: one reaction to Redis' answer, on every request.
  check(request: LimitRequest): Promise<LimitDecision> {
    if (this.fallbackActive) return this.withoutRedis(request);
    return this.redis.check(request).then(
      (decision) => {
        this.consecutiveFailures = 0;
        if (this.localUsed) this.forgetLocal();
        this.reports.set(request.subject, { windows: decision.windows, atMs: Date.now() });
        return decision;
      },
      (err: unknown) => {
        if (err instanceof StoreBusyError) throw new LimiterUnavailableError('Redis answers, but too late for this request', { cause: err });
        if (!(err instanceof StoreUnavailableError)) throw err;
        this.consecutiveFailures++;
        if (this.consecutiveFailures >= (this.options.failuresBeforeFallback ?? 3) && !this.fallbackActive) this.engage(err);
        return this.withoutRedis(request);
      },
    );
  }

  /** The local decision; fail_closed refuses (a rejection: async). */
  private async withoutRedis(request: LimitRequest): Promise<LimitDecision> {
    if (this.options.policy === 'fail_closed') throw new LimiterUnavailableError();
    // This replica's share of each limit: together the replicas stay within it (rounding down).
    const replicas = Math.max(1, this.options.liveReplicas());
    const share = (limit: number) => Math.max(1, Math.floor(limit / replicas));
    this.seedFromReport(request, replicas, share);
    this.localUsed = true;
    const { quota, concurrency } = request;
    return this.local.check({
      ...request,
      windows: request.windows.map((w) => ({ ...w, limit: share(w.limit) })),
      quota: quota && { ...quota, limit: share(quota.limit) },
      concurrency: concurrency && { ...concurrency, limit: share(concurrency.limit) },
    });
  }

  /**
   * A window's local counter starts as if this replica had used its share of what Redis counted:
   * its share minus max(0, limit − used) ÷ replicas, at the time of the report. The same for the
   * quota, while the reported period lasts.
   */
  private seedFromReport(request: LimitRequest, replicas: number, share: (limit: number) => number): void {
    const report = this.reports.get(request.subject);
    if (!report) return;
    const now = Date.now();
    const usedShare = (limit: number, used: number) => share(limit) - Math.floor(Math.max(0, limit - used) / replicas);
    request.windows.forEach((w) => {
      const reported = report.windows.find((r) => r.calendar === undefined && r.windowMs === w.windowMs && r.limit === w.limit);
      if (!reported || report.atMs <= now - w.windowMs) return;
      this.local.seed(request, w, usedShare(w.limit, reported.used), report.atMs);
    });
    const { quota } = request;
    const reported = quota && report.windows.find((r) => r.calendar === quota.period && r.limit === quota.limit);
    if (quota && reported && reported.resetMs > now) this.local.seedQuota(request.subject, quota, usedShare(quota.limit, reported.used), report.atMs);
  }

  private forgetLocal(): void {
    this.local.reset();
    this.localUsed = false;
  }

  private forgetOldReports(): void {
    const now = Date.now();
    for (const [subject, report] of this.reports) {
      const longest = Math.max(0, ...report.windows.map((w) => w.windowMs));
      const quotaEnds = Math.max(0, ...report.windows.map((w) => (w.calendar ? w.resetMs : 0)));
      if (report.atMs <= now - longest && quotaEnds <= now) this.reports.delete(subject);
    }
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
    clearInterval(this.sweeper);
    this.probeTimer = undefined;
    await this.local.close();
  }
}
