// Seeded arrival sequences and an exact sliding log, for the limiter's property tests.

/** mulberry32: small, fast, reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Poisson arrivals (integer ms, non-decreasing) at `ratePerMs` over `durationMs`, starting at `startMs`. */
export function poissonArrivals(random: () => number, ratePerMs: number, durationMs: number, startMs: number): number[] {
  const times: number[] = [];
  let t = startMs;
  for (;;) {
    t += -Math.log(1 - random()) / ratePerMs;
    if (t >= startMs + durationMs) return times;
    times.push(Math.floor(t));
  }
}

/** How many an exact sliding log admits: a request at t passes if fewer than `limit` were admitted in (t − W, t]. */
export function exactLogAdmissions(times: readonly number[], limit: number, windowMs: number): number[] {
  const admitted: number[] = [];
  let first = 0;
  for (const t of times) {
    while (first < admitted.length && admitted[first] <= t - windowMs) first++;
    if (admitted.length - first < limit) admitted.push(t);
  }
  return admitted;
}

/** The largest number of `admitted` times in any rolling half-open window (s − W, s]. */
export function maxInAnyWindow(admitted: readonly number[], windowMs: number): number {
  let best = 0;
  let first = 0;
  for (let i = 0; i < admitted.length; i++) {
    while (admitted[first] <= admitted[i] - windowMs) first++;
    best = Math.max(best, i - first + 1);
  }
  return best;
}

/** How many of the sorted `times` lie in the closed span [from, to] (binary search). */
export function countBetween(times: readonly number[], from: number, to: number): number {
  const firstAtLeast = (x: number) => {
    let lo = 0;
    let hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (times[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return firstAtLeast(to + 1) - firstAtLeast(from);
}
