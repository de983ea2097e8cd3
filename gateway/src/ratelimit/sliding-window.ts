import type { WindowState } from './limiter';

/*
 * The sliding window, shared by the memory limiter and mirrored line by line in the Lua script.
 *
 * A window of length W is split into buckets of width g = ceil(W / BUCKETS_PER_WINDOW). A request at
 * time t counts every bucket that overlaps [t − W, t] in full. That span covers the whole rolling
 * window, so admitting only while the count + cost ≤ N means no rolling window of length W ever holds
 * more than N: never over-admits. It may count up to one bucket (< g) of requests that are already
 * older than W, so it can under-admit: in the worst case it lets through N per W + g instead of per W,
 * i.e. at least BUCKETS/(BUCKETS+1) ≈ 95.2 % of what an exact sliding log allows.
 */
export const BUCKETS_PER_WINDOW = 20;

export function bucketWidth(windowMs: number): number {
  return Math.ceil(windowMs / BUCKETS_PER_WINDOW);
}

/** Bucket index → units counted in that bucket. */
export type Buckets = Map<number, number>;

export interface WindowEvaluation {
  /** Units in buckets that still overlap the window, before this request. */
  usedBefore: number;
  blocking: boolean;
  resetMs: number;
  /** The bucket this request falls in. */
  current: number;
}

/** Drops buckets that no longer overlap the window, then decides whether `cost` more fits. */
export function evaluateWindow(buckets: Buckets, nowMs: number, limit: number, windowMs: number, cost: number): WindowEvaluation {
  const width = bucketWidth(windowMs);
  const current = Math.floor(nowMs / width);
  const oldest = Math.floor((nowMs - windowMs) / width);
  let usedBefore = 0;
  for (const [index, count] of buckets) {
    if (index < oldest) buckets.delete(index);
    else usedBefore += count;
  }
  const blocking = usedBefore + cost > limit;
  const live = [...buckets.keys()].sort((a, b) => a - b);
  // A bucket b stops overlapping the window once now − W ≥ (b + 1)·g.
  const expiry = (index: number) => (index + 1) * width + windowMs;

  let resetMs: number;
  if (!blocking) {
    resetMs = expiry(live.length > 0 ? live[0] : current); // when remaining next grows
  } else if (cost > limit) {
    resetMs = nowMs + windowMs; // never fits; say "a whole window" rather than nothing
  } else {
    resetMs = nowMs;
    let freed = 0;
    for (const index of live) {
      freed += buckets.get(index)!;
      if (usedBefore - freed + cost <= limit) {
        resetMs = expiry(index);
        break;
      }
    }
  }
  return { usedBefore, blocking, resetMs, current };
}

/** The state reported for a window once the decision is known. */
export function windowState(evaluation: WindowEvaluation, limit: number, windowMs: number, admitted: boolean, cost: number): WindowState {
  return {
    limit,
    windowMs,
    used: evaluation.usedBefore + (admitted ? cost : 0),
    blocking: evaluation.blocking,
    resetMs: evaluation.resetMs,
  };
}
