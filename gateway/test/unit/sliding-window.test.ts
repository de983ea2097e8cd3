import { MemoryLimiter } from '../../src/ratelimit/memory-limiter';
import { BUCKETS_PER_WINDOW, bucketWidth } from '../../src/ratelimit/sliding-window';
import { countBetween, exactLogAdmissions, maxInAnyWindow, poissonArrivals, seededRandom } from '../support/arrivals';

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
const STATED_UNDER_ADMISSION = 1 / (BUCKETS_PER_WINDOW + 1); // README: at most ≈ 4.8 %

function replay(times: number[], windows: { limit: number; windowMs: number }[], cost = 1) {
  const limiter = new MemoryLimiter();
  const specs = windows.map((w) => ({ name: String(w.windowMs), ...w }));
  const admitted: number[] = [];
  const refused: number[] = [];
  for (const t of times) (limiter.decide({ subject: 'k', windows: specs, cost }, t).allowed ? admitted : refused).push(t);
  void limiter.close();
  return { admitted, refused };
}

describe('sliding window arithmetic', () => {
  it('splits a window into buckets of ceil(W / BUCKETS_PER_WINDOW) ms', () => {
    expect(bucketWidth(60_000)).toBe(3_000);
    expect(bucketWidth(1_000)).toBe(50);
    expect(bucketWidth(7)).toBe(1);
  });

  it('admits exactly N at once, then refuses with the time the oldest bucket leaves the window', () => {
    const limiter = new MemoryLimiter();
    const request = { subject: 'k', windows: [{ name: 'm', limit: 3, windowMs: 60_000 }], cost: 1 };
    const at = T0 + 1_234;
    const decisions = [0, 1, 2, 3].map(() => limiter.decide(request, at));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false]);
    expect(decisions.map((d) => d.windows[0].used)).toEqual([1, 2, 3, 3]);
    // bucket of `at` is floor(at / 3000); it leaves the window at (bucket + 1) * 3000 + 60000
    const expectedReset = (Math.floor(at / 3000) + 1) * 3000 + 60_000;
    expect(decisions[3].windows[0]).toMatchObject({ blocking: true, resetMs: expectedReset });
    expect(limiter.decide(request, expectedReset - 1).allowed).toBe(false);
    expect(limiter.decide(request, expectedReset).allowed).toBe(true);
    void limiter.close();
  });

  it('does not count refused requests', () => {
    const limiter = new MemoryLimiter();
    const request = { subject: 'k', windows: [{ name: 's', limit: 2, windowMs: 1_000 }], cost: 1 };
    for (let i = 0; i < 10; i++) limiter.decide(request, T0 + i);
    expect(limiter.decide(request, T0 + 1_050 + 50).allowed).toBe(true);
    void limiter.close();
  });

  it('checks every window and counts in all or none', () => {
    const limiter = new MemoryLimiter();
    const windows = [
      { name: 's', limit: 5, windowMs: 1_000 },
      { name: 'm', limit: 7, windowMs: 60_000 },
    ];
    const allowed = Array.from({ length: 10 }, (_, i) => limiter.decide({ subject: 'k', windows, cost: 1 }, T0 + i * 400).allowed);
    expect(allowed.filter(Boolean)).toHaveLength(7);
    const last = limiter.decide({ subject: 'k', windows, cost: 1 }, T0 + 4_000);
    expect(last.windows.map((w) => w.blocking)).toEqual([false, true]);
    void limiter.close();
  });

  it('counts nothing for a zero-cost look', () => {
    const limiter = new MemoryLimiter();
    const windows = [{ name: 'm', limit: 2, windowMs: 60_000 }];
    limiter.decide({ subject: 'k', windows, cost: 1 }, T0);
    const peek = limiter.decide({ subject: 'k', windows, cost: 0 }, T0 + 1);
    expect(peek).toMatchObject({ allowed: true, windows: [{ used: 1 }] });
    expect(limiter.decide({ subject: 'k', windows, cost: 0 }, T0 + 2).windows[0].used).toBe(1);
    void limiter.close();
  });

  it('charges the cost and refuses what can never fit', () => {
    const limiter = new MemoryLimiter();
    const windows = [{ name: 'm', limit: 10, windowMs: 60_000 }];
    expect(limiter.decide({ subject: 'k', windows, cost: 4 }, T0).allowed).toBe(true);
    expect(limiter.decide({ subject: 'k', windows, cost: 4 }, T0).allowed).toBe(true);
    const third = limiter.decide({ subject: 'k', windows, cost: 4 }, T0);
    expect(third).toMatchObject({ allowed: false, windows: [{ used: 8 }] });
    expect(limiter.decide({ subject: 'k', windows, cost: 2 }, T0).allowed).toBe(true);
    expect(limiter.decide({ subject: 'other', windows, cost: 11 }, T0).windows[0]).toMatchObject({ blocking: true, resetMs: T0 + 60_000 });
    void limiter.close();
  });
});

describe('sliding window properties (seeded random arrivals)', () => {
  const cases = [
    { limit: 50, windowMs: 10_000, load: 1.2 },
    { limit: 50, windowMs: 10_000, load: 3 },
    { limit: 100, windowMs: 60_000, load: 1.5 },
    { limit: 7, windowMs: 1_000, load: 4 },
    { limit: 1_000, windowMs: 86_400_000, load: 2 },
  ];

  it.each(cases)('never more than N in any rolling window; refuses only when a window ≤ W + W/20 is full; ≥ (1 − ε) × exact log: %o', ({ limit, windowMs, load }) => {
    for (let seed = 1; seed <= 5; seed++) {
      const random = seededRandom(seed * 7919 + limit);
      const times = poissonArrivals(random, (load * limit) / windowMs, 40 * windowMs, T0 + Math.floor(random() * windowMs));
      const { admitted, refused } = replay(times, [{ limit, windowMs }]);

      expect(maxInAnyWindow(admitted, windowMs)).toBeLessThanOrEqual(limit);
      const width = bucketWidth(windowMs);
      // Admissions at the same ms as a refusal cannot matter: the state that refused it refuses them too.
      const refusedWithRoom = refused.filter((t) => countBetween(admitted, t - windowMs - width, t) < limit);
      expect(refusedWithRoom).toEqual([]);
      const exact = exactLogAdmissions(times, limit, windowMs).length;
      expect(admitted.length).toBeGreaterThanOrEqual(Math.floor((1 - STATED_UNDER_ADMISSION) * exact));
    }
  });

  it('holds every window of a multi-window tier at once', () => {
    const random = seededRandom(42);
    const windows = [
      { limit: 10, windowMs: 1_000 },
      { limit: 100, windowMs: 60_000 },
    ];
    const times = poissonArrivals(random, 30 / 1_000, 10 * 60_000, T0);
    const { admitted } = replay(times, windows);
    for (const w of windows) expect(maxInAnyWindow(admitted, w.windowMs)).toBeLessThanOrEqual(w.limit);
  });
});
