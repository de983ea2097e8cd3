import { ConfigError, parseConfig } from '../../src/config/loader';
import { catalogue } from '../../src/errors/catalogue';
import type { LimitRequest } from '../../src/ratelimit/limiter';
import { MemoryLimiter } from '../../src/ratelimit/memory-limiter';
import { RateLimitPlan } from '../../src/ratelimit/plan';

// Issue #17's concurrency limit without Redis: its config, the plan (tiers without it keep their
// request's shape), and the memory limiter's slots (the embedded store's and the fallback's).

const config = (tiers: string, top = '') =>
  parseConfig(`${top}tiers:\n${tiers}\nupstreams:\n  app: { targets: [http://127.0.0.1:9001] }\nroutes:\n  - { name: all, match: { path_prefix: / }, upstream: app }\n`, {});

function refusal(tiers: string, top = ''): string {
  try {
    config(tiers, top);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('accepts a plain number or { limit, mode }, and a lease (30 s by default)', () => {
    const parsed = config('  a: { limits: [], concurrency: 20 }\n  b: { limits: [], concurrency: { limit: 5, mode: shadow } }');
    expect(parsed.tiers.a.concurrency).toBe(20);
    expect(parsed.tiers.b.concurrency).toEqual({ limit: 5, mode: 'shadow' });
    expect(parsed.rate_limiting.concurrency_lease).toBe(30_000);
    expect(config('  a: { limits: [] }', 'rate_limiting: { concurrency_lease: 2s }\n').rate_limiting.concurrency_lease).toBe(2000);
  });

  it.each([
    ['  a: { limits: [], concurrency: 0 }', ''],
    ['  a: { limits: [], concurrency: 2.5 }', ''],
    ['  a: { limits: [], concurrency: "ten" }', ''],
    ['  a: { limits: [], concurrency: { limit: 3, mode: dry } }', ''],
    ['  a: { limits: [], concurrency: { mode: shadow } }', ''],
    ['  a: { limits: [], concurrency: { limit: 3, extra: 1 } }', ''],
    ['  a: { limits: [] }', 'rate_limiting: { concurrency_lease: 100ms }\n'],
    ['  a: { limits: [] }', 'rate_limiting: { concurrency_lease: soon }\n'],
  ])('refuses %s %s', (tiers, top) => {
    expect(refusal(tiers, top)).toMatch(/concurrency/);
  });

  it('the new error code is a 429', () => {
    expect(catalogue.too_many_concurrent_requests.status).toBe(429);
  });
});

describe('plan', () => {
  const plan = new RateLimitPlan(
    config(
      '  plain: { limits: [{ requests: 5, per: 1m }] }\n  conc: { limits: [{ requests: 5, per: 1m }], concurrency: 3 }\n' +
        '  only: { limits: [], concurrency: 2 }\n  trial: { limits: [], concurrency: 4, mode: shadow }',
      'rate_limiting: { concurrency_lease: 9s }\n',
    ),
  );

  it('a tier without concurrency: the request has no concurrency field at all', () => {
    const request = plan.request({ id: 'k1', tier: 'plain' }, 'all', 1)!;
    expect(Object.keys(request)).not.toContain('concurrency');
  });

  it('a tier with it carries the limit, the lease and the mode; concurrency alone is a limit', () => {
    expect(plan.request({ id: 'k1', tier: 'conc' }, 'all', 1)!.concurrency).toEqual({ limit: 3, leaseMs: 9000, shadow: false });
    expect(plan.request({ id: 'k1', tier: 'only' }, 'all', 1)).toMatchObject({ windows: [], concurrency: { limit: 2 } });
    expect(plan.request({ id: 'k1', tier: 'trial' }, 'all', 1)!.concurrency).toEqual({ limit: 4, leaseMs: 9000, shadow: true });
  });
});

describe('memory limiter slots', () => {
  const request = (subject: string, limit: number, extra: Partial<LimitRequest> = {}): LimitRequest => ({
    subject,
    windows: [],
    concurrency: { limit, leaseMs: 30_000 },
    cost: 1,
    ...extra,
  });

  it('admits N at once, refuses the next, and admits again once one is given back (once)', async () => {
    const limiter = new MemoryLimiter();
    const taken = [];
    for (let i = 0; i < 3; i++) {
      const d = await limiter.check(request('k', 3));
      expect(d.allowed).toBe(true);
      expect(d.concurrency).toEqual({ limit: 3, inFlight: i + 1, blocking: false, shadow: undefined });
      taken.push(d.release!);
    }
    const refused = await limiter.check(request('k', 3));
    expect(refused).toMatchObject({ allowed: false, concurrency: { inFlight: 3, blocking: true } });
    expect(refused.release).toBeUndefined();
    expect((await limiter.check(request('other', 3))).allowed).toBe(true); // per subject
    taken[0]();
    taken[0](); // a second call gives back nothing more
    expect((await limiter.check(request('k', 3))).allowed).toBe(true);
    expect((await limiter.check(request('k', 3))).allowed).toBe(false);
    await limiter.close();
  });

  it('atomic with the windows: a window refusal takes no slot; a slot refusal counts in no window', async () => {
    const limiter = new MemoryLimiter(() => 1_000_000);
    const windows = [{ name: '60000', limit: 2, windowMs: 60_000 }];
    const first = await limiter.check(request('k', 1, { windows }));
    expect(first.allowed).toBe(true);
    const noSlot = await limiter.check(request('k', 1, { windows }));
    expect(noSlot.allowed).toBe(false);
    expect(noSlot.windows[0].used).toBe(1); // not counted
    first.release!();
    expect((await limiter.check(request('k', 1, { windows }))).allowed).toBe(true); // the window's 2nd
    expect(limiter.decide(request('k', 1, { windows, cost: 0 }), 1_000_000).concurrency!.inFlight).toBe(1); // a peek takes none
  });

  it('a shadow limit never refuses, still takes and gives back slots, and reports the would-be refusal', async () => {
    const limiter = new MemoryLimiter();
    const shadow = (): LimitRequest => ({ subject: 's', windows: [], concurrency: { limit: 1, leaseMs: 30_000, shadow: true }, cost: 1 });
    const first = await limiter.check(shadow());
    const second = await limiter.check(shadow());
    expect(second).toMatchObject({ allowed: true, concurrency: { inFlight: 2, blocking: true, shadow: true } });
    first.release!();
    second.release!();
    expect((await limiter.check(shadow())).concurrency).toMatchObject({ inFlight: 1, blocking: false });
  });

  it('reset() (Redis decides again) forgets local slots; their release is then harmless', async () => {
    const limiter = new MemoryLimiter();
    const held = await limiter.check(request('k', 1));
    limiter.reset();
    const again = await limiter.check(request('k', 1));
    expect(again.allowed).toBe(true);
    held.release!(); // must not free the new holder's slot
    expect((await limiter.check(request('k', 1))).allowed).toBe(false);
  });
});
