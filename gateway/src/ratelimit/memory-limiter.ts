import type { LimitDecision, Limiter, LimitRequest, QuotaSpec, WindowSpec, WindowState } from './limiter';
import { calendarPeriod } from './calendar';
import { bucketWidth, evaluateWindow, windowState, type Buckets } from './sliding-window';

interface Counter {
  buckets: Buckets;
  /** Unix ms after which every bucket is out of the window: the counter can be dropped. */
  expiresAt: number;
}

/** A calendar quota's count for one period. */
interface QuotaCounter {
  periodStart: number;
  used: number;
  expiresAt: number;
}

/** The counter's name within this limiter: per account for perAccount windows, else per key. */
function counterName(request: LimitRequest, window: Pick<WindowSpec, 'name' | 'perAccount'>): string {
  return window.perAccount ? `@${request.account}:account:${window.name}` : `${request.subject}:${window.name}`;
}

/**
 * The sliding-window limiter in this process's memory: the embedded store's limiter, and the
 * fallback while Redis cannot answer. `clock` is injectable so tests can replay exact timings.
 * Same decisions as the Lua script (scripts.ts), shadow windows and calendar quotas included.
 */
export class MemoryLimiter implements Limiter {
  private readonly counters = new Map<string, Counter>();
  private readonly quotas = new Map<string, QuotaCounter>();
  /** Requests in flight per subject: given back locally (this process's slots need no lease). */
  private readonly slots = new Map<string, Set<symbol>>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly clock: () => number = Date.now) {
    // Forget idle counters, so memory follows the active keys, not every key ever seen.
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  async check(request: LimitRequest): Promise<LimitDecision> {
    return this.decide(request, this.clock());
  }

  /** The decision at an explicit time (the same arithmetic the Lua script runs in Redis). */
  decide(request: LimitRequest, nowMs: number): LimitDecision {
    const counters = request.windows.map((w) => this.counter(counterName(request, w)));
    const evaluations = request.windows.map((w, i) => evaluateWindow(counters[i].buckets, nowMs, w.limit, w.windowMs, request.cost));
    const quota = request.quota && this.quotaCounter(request.subject, request.quota, nowMs);
    const quotaBlocking = quota !== undefined && quota.used + request.cost > request.quota!.limit;
    const { concurrency } = request;
    const inFlight = concurrency ? (this.slots.get(request.subject)?.size ?? 0) : 0;
    const slotBlocking = concurrency !== undefined && inFlight + 1 > concurrency.limit;
    const allowed =
      evaluations.every((e, i) => !e.blocking || request.windows[i].shadow === true) &&
      (!quotaBlocking || request.quota!.shadow === true) &&
      (!slotBlocking || concurrency!.shadow === true);
    if (allowed && request.cost > 0) {
      request.windows.forEach((w, i) => {
        const { buckets } = counters[i];
        const current = evaluations[i].current;
        buckets.set(current, (buckets.get(current) ?? 0) + request.cost);
        counters[i].expiresAt = nowMs + w.windowMs + bucketWidth(w.windowMs);
      });
      if (quota) quota.used += request.cost;
    }
    const windows: WindowState[] = request.windows.map((w, i) => ({
      ...windowState(evaluations[i], w.limit, w.windowMs, allowed, request.cost),
      shadow: w.shadow,
    }));
    if (quota) windows.push(quotaState(request.quota!, quota, quotaBlocking));
    if (!concurrency) return { allowed, nowMs, windows };
    const taken = allowed && request.cost > 0;
    const state = { limit: concurrency.limit, inFlight: inFlight + (taken ? 1 : 0), blocking: slotBlocking, shadow: concurrency.shadow };
    return { allowed, nowMs, windows, concurrency: state, release: taken ? this.takeSlot(request.subject) : undefined };
  }

  /** Takes a slot for `subject`; the returned function gives it back (once). */
  private takeSlot(subject: string): () => void {
    let held = this.slots.get(subject);
    if (!held) this.slots.set(subject, (held = new Set()));
    const slot = Symbol(subject);
    held.add(slot);
    return () => {
      const current = this.slots.get(subject);
      if (!current?.delete(slot) || current.size > 0) return;
      this.slots.delete(subject);
    };
  }

  /**
   * Starts a window's counter at `units` counted at `atMs`, unless it has one already: the fallback
   * begins from what Redis last reported instead of from zero. The units age out like any others.
   */
  seed(request: LimitRequest, window: Pick<WindowSpec, 'name' | 'windowMs' | 'perAccount'>, units: number, atMs: number): void {
    const key = counterName(request, window);
    if (this.counters.has(key) || units <= 0) return;
    const buckets: Buckets = new Map([[Math.floor(atMs / bucketWidth(window.windowMs)), units]]);
    this.counters.set(key, { buckets, expiresAt: atMs + window.windowMs + bucketWidth(window.windowMs) });
  }

  /** The same for a quota: `units` already used in the period holding `atMs`. */
  seedQuota(subject: string, quota: QuotaSpec, units: number, atMs: number): void {
    const key = `${subject}:quota:${quota.period}`;
    if (this.quotas.has(key) || units <= 0) return;
    const period = calendarPeriod(atMs, quota.period);
    this.quotas.set(key, { periodStart: period.startMs, used: units, expiresAt: period.endMs });
  }

  /**
   * Forgets every counter (Redis decides again, and knows better). Slots taken locally are not in
   * Redis either: they are forgotten too (their release then does nothing).
   */
  reset(): void {
    this.counters.clear();
    this.quotas.clear();
    this.slots.clear();
  }

  private counter(key: string): Counter {
    let counter = this.counters.get(key);
    if (!counter) {
      counter = { buckets: new Map(), expiresAt: 0 };
      this.counters.set(key, counter);
    }
    return counter;
  }

  /** The quota's counter for the period holding `nowMs`: a new period starts from zero. */
  private quotaCounter(subject: string, quota: QuotaSpec, nowMs: number): QuotaCounter {
    const key = `${subject}:quota:${quota.period}`;
    const period = calendarPeriod(nowMs, quota.period);
    let counter = this.quotas.get(key);
    if (!counter || counter.periodStart !== period.startMs) {
      counter = { periodStart: period.startMs, used: 0, expiresAt: period.endMs };
      this.quotas.set(key, counter);
    }
    return counter;
  }

  private sweep(): void {
    const now = this.clock();
    for (const [key, counter] of this.counters) if (counter.expiresAt <= now) this.counters.delete(key);
    for (const [key, counter] of this.quotas) if (counter.expiresAt <= now) this.quotas.delete(key);
  }

  /** Counters held (for tests and memory accounting). */
  get size(): number {
    return this.counters.size + this.quotas.size;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}

function quotaState(quota: QuotaSpec, counter: QuotaCounter, blocking: boolean): WindowState {
  return {
    limit: quota.limit,
    windowMs: counter.expiresAt - counter.periodStart,
    used: counter.used,
    blocking,
    resetMs: counter.expiresAt,
    shadow: quota.shadow,
    calendar: quota.period,
  };
}
