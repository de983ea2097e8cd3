import type { LimitDecision, Limiter, LimitRequest } from './limiter';
import { bucketWidth, evaluateWindow, windowState, type Buckets } from './sliding-window';

interface Counter {
  buckets: Buckets;
  /** Unix ms after which every bucket is out of the window: the counter can be dropped. */
  expiresAt: number;
}

/**
 * The sliding-window limiter in this process's memory: the embedded store's limiter, and the
 * fallback while Redis cannot answer. `clock` is injectable so tests can replay exact timings.
 */
export class MemoryLimiter implements Limiter {
  private readonly counters = new Map<string, Counter>();
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
    const counters = request.windows.map((w) => this.counter(`${request.subject}:${w.name}`));
    const evaluations = request.windows.map((w, i) => evaluateWindow(counters[i].buckets, nowMs, w.limit, w.windowMs, request.cost));
    const allowed = evaluations.every((e) => !e.blocking);
    if (allowed && request.cost > 0) {
      request.windows.forEach((w, i) => {
        const { buckets } = counters[i];
        const current = evaluations[i].current;
        buckets.set(current, (buckets.get(current) ?? 0) + request.cost);
        counters[i].expiresAt = nowMs + w.windowMs + bucketWidth(w.windowMs);
      });
    }
    return {
      allowed,
      nowMs,
      windows: request.windows.map((w, i) => windowState(evaluations[i], w.limit, w.windowMs, allowed, request.cost)),
    };
  }

  /**
   * Starts a window's counter at `units` counted at `atMs`, unless it has one already: the fallback
   * begins from what Redis last reported instead of from zero. The units age out like any others.
   */
  seed(subject: string, window: { name: string; windowMs: number }, units: number, atMs: number): void {
    const key = `${subject}:${window.name}`;
    if (this.counters.has(key) || units <= 0) return;
    const buckets: Buckets = new Map([[Math.floor(atMs / bucketWidth(window.windowMs)), units]]);
    this.counters.set(key, { buckets, expiresAt: atMs + window.windowMs + bucketWidth(window.windowMs) });
  }

  /** Forgets every counter (Redis decides again, and knows better). */
  reset(): void {
    this.counters.clear();
  }

  private counter(key: string): Counter {
    let counter = this.counters.get(key);
    if (!counter) {
      counter = { buckets: new Map(), expiresAt: 0 };
      this.counters.set(key, counter);
    }
    return counter;
  }

  private sweep(): void {
    const now = this.clock();
    for (const [key, counter] of this.counters) if (counter.expiresAt <= now) this.counters.delete(key);
  }

  /** Counters held (for tests and memory accounting). */
  get size(): number {
    return this.counters.size;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}
