import { ConfigError, parseConfig } from '../../src/config/loader';
import { calendarPeriod } from '../../src/ratelimit/calendar';
import type { LimitRequest } from '../../src/ratelimit/limiter';
import { MemoryLimiter } from '../../src/ratelimit/memory-limiter';
import { RateLimitPlan } from '../../src/ratelimit/plan';

// Issue #17's limits without Redis: their config, the plan that builds a request's limits, the
// calendar in UTC, and the memory limiter (the embedded store's, and the fallback's) for each kind.

const iso = (ms: number) => new Date(ms).toISOString();
const at = (text: string) => Date.parse(text);

const config = (tiers: string) =>
  parseConfig(
    `tiers:\n${tiers}\nupstreams:\n  app: { targets: [http://127.0.0.1:9001] }\nroutes:\n` +
      `  - { name: users, match: { path_prefix: /v1/users }, upstream: app, limits: { pro: [{ requests: 5, per: 1s }] } }\n` +
      `  - { name: other, match: { path_prefix: / }, upstream: app }\n`,
    {},
  );

function refusal(tiers: string): string {
  try {
    config(tiers);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('accepts account_limits, quota, mode (tier-wide and per window) and route windows in shadow', () => {
    const parsed = config(
      '  pro:\n    limits: [{ requests: 600, per: 1m }, { requests: 100, per: 1s, mode: shadow }]\n' +
        '    account_limits: [{ requests: 2000, per: 1m }]\n    quota: { requests: 1000000, per: month }\n    mode: enforce\n' +
        '  trial: { limits: [], quota: { requests: 10, per: week, mode: shadow }, mode: shadow }',
    );
    expect(parsed.tiers.pro).toMatchObject({ account_limits: [{ requests: 2000, per: 60_000 }], quota: { requests: 1_000_000, per: 'month' }, mode: 'enforce' });
    expect(parsed.tiers.pro.limits[1].mode).toBe('shadow');
    expect(parsed.tiers.trial.mode).toBe('shadow');
  });

  it.each([
    ['a period that is not day, week or month', '  pro: { limits: [], quota: { requests: 5, per: 30d } }', /tiers\.pro\.quota\.per: expected day, week or month/],
    ['a quota of 0 requests', '  pro: { limits: [], quota: { requests: 0, per: day } }', /tiers\.pro\.quota\.requests/],
    ['an unknown mode', '  pro: { limits: [], mode: dry_run }', /tiers\.pro\.mode: expected enforce or shadow/],
    ['an unknown window mode', '  pro: { limits: [{ requests: 1, per: 1m, mode: off }] }', /tiers\.pro\.limits\[0\]\.mode/],
    ['two account windows of one length', '  pro: { limits: [], account_limits: [{ requests: 1, per: 1m }, { requests: 2, per: 60s }] }', /account_limits\[1\]\.per: another limit/],
    ['a misspelt field', '  pro: { limits: [], account_limit: [] }', /account_limit/],
  ])('refuses %s', (_, tiers, message) => {
    expect(refusal(tiers)).toMatch(message);
  });
});

describe('RateLimitPlan', () => {
  const plan = new RateLimitPlan(
    config(
      '  plain: { limits: [{ requests: 60, per: 1m }] }\n' +
        '  pro:\n    limits: [{ requests: 600, per: 1m }]\n    account_limits: [{ requests: 2000, per: 1m }]\n    quota: { requests: 1000, per: month }\n' +
        '  trial: { limits: [{ requests: 2, per: 1m }], account_limits: [{ requests: 9, per: 1h }], mode: shadow }\n' +
        '  unlimited: { limits: [] }',
    ),
  );

  it('a tier using none of the new kinds gets the same windows object as before: no copy, no quota, no account', () => {
    const request = plan.request({ id: 'key_a', tier: 'plain' }, 'other', 1)!;
    expect(request.windows).toBe(plan.windows('plain', 'other'));
    expect(request).toEqual({ subject: 'key_a', account: undefined, windows: [expect.objectContaining({ name: '60000', limit: 60, windowMs: 60_000, shadow: false })], quota: undefined, cost: 1 });
    expect(plan.request({ id: 'key_a', tier: 'plain' }, 'other', 1)!.windows).toBe(request.windows);
  });

  it('account windows only for a key with an account; the quota for every key of the tier', () => {
    const alone = plan.request({ id: 'key_a', tier: 'pro' }, 'users', 3)!;
    expect(alone.windows.map((w) => [w.name, w.limit, w.perAccount])).toEqual([
      ['60000', 600, false],
      ['users:1000', 5, false],
    ]);
    expect(alone.quota).toEqual({ limit: 1000, period: 'month', shadow: false });
    const accounted = plan.request({ id: 'key_b', tier: 'pro', account: 'acme' }, 'users', 3)!;
    expect(accounted.account).toBe('acme');
    expect(accounted.windows.map((w) => [w.name, w.limit, w.perAccount])).toEqual([
      ['60000', 600, false],
      ['users:1000', 5, false],
      ['60000', 2000, true],
    ]);
  });

  it("a key's own limits replace only its tier's windows", () => {
    const own = plan.request({ id: 'key_c', tier: 'pro', account: 'acme', limits: [{ requests: 7, per: '1m' }, { requests: 70, per: '1d' }] }, 'users', 1)!;
    expect(own.windows.map((w) => [w.name, w.limit, w.perAccount])).toEqual([
      ['60000', 7, false],
      ['86400000', 70, false],
      ['users:1000', 5, false],
      ['60000', 2000, true],
    ]);
    expect(own.quota?.limit).toBe(1000);
    // built once per cached record, not per request
    const record = { id: 'key_c', tier: 'pro', limits: [{ requests: 7, per: '1m' }] };
    expect(plan.request(record, 'users', 1)!.windows).toBe(plan.request(record, 'users', 2)!.windows);
    expect(plan.request(record, 'other', 1)!.windows).not.toBe(plan.request(record, 'users', 1)!.windows);
    expect(plan.request({ ...record, account: 'a' }, 'users', 1)!.windows).toHaveLength(3);
    expect(plan.request(record, 'users', 1)!.windows).toHaveLength(2);
  });

  it('a shadow tier makes every window and the quota shadow; an unlimited tier makes no request', () => {
    const shadow = plan.request({ id: 'key_d', tier: 'trial', account: 'x', limits: [{ requests: 1, per: '1s' }] }, 'other', 1)!;
    expect(shadow.windows.every((w) => w.shadow)).toBe(true);
    expect(plan.request({ id: 'key_e', tier: 'unlimited' }, 'other', 1)).toBeNull();
    expect(plan.request({ id: 'key_e', tier: 'gone' }, 'other', 1)).toBeNull();
  });
});

describe('calendar periods in UTC', () => {
  it.each([
    ['day', '2026-12-31T23:59:59.999Z', '2026-12-31T00:00:00.000Z', '2027-01-01T00:00:00.000Z'],
    ['day', '2028-02-29T00:00:00.000Z', '2028-02-29T00:00:00.000Z', '2028-03-01T00:00:00.000Z'],
    ['week', '2027-03-07T23:59:59.999Z', '2027-03-01T00:00:00.000Z', '2027-03-08T00:00:00.000Z'], // Sunday: still the week of Monday the 1st
    ['week', '2027-03-08T00:00:00.000Z', '2027-03-08T00:00:00.000Z', '2027-03-15T00:00:00.000Z'], // Monday
    ['week', '2027-01-01T12:00:00.000Z', '2026-12-28T00:00:00.000Z', '2027-01-04T00:00:00.000Z'], // a week across the new year
    ['week', '1970-01-01T00:00:00.000Z', '1969-12-29T00:00:00.000Z', '1970-01-05T00:00:00.000Z'], // the epoch was a Thursday
    ['month', '2028-02-15T08:00:00.000Z', '2028-02-01T00:00:00.000Z', '2028-03-01T00:00:00.000Z'], // 29 days
    ['month', '2027-02-28T23:59:59.999Z', '2027-02-01T00:00:00.000Z', '2027-03-01T00:00:00.000Z'], // 28 days
    ['month', '2026-12-31T23:59:59.999Z', '2026-12-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z'],
  ] as const)('%s of %s: %s → %s', (period, now, start, end) => {
    const found = calendarPeriod(at(now), period);
    expect([iso(found.startMs), iso(found.endMs)]).toEqual([start, end]);
  });
});

describe('MemoryLimiter: the same kinds without Redis', () => {
  let limiter: MemoryLimiter;
  beforeEach(() => (limiter = new MemoryLimiter()));
  afterEach(() => limiter.close());

  it('a monthly quota resets on the 1st 00:00 UTC (February of a leap year), its reset the boundary', () => {
    const request: LimitRequest = { subject: 'k', windows: [], quota: { limit: 2, period: 'month' }, cost: 1 };
    const last = at('2028-02-29T23:59:59.999Z');
    expect([1, 2, 3].map(() => limiter.decide(request, last).allowed)).toEqual([true, true, false]);
    expect(limiter.decide(request, last).windows[0]).toMatchObject({ used: 2, blocking: true, resetMs: at('2028-03-01T00:00:00Z'), calendar: 'month', windowMs: 29 * 86_400_000 });
    expect(limiter.decide(request, at('2028-03-01T00:00:00Z')).windows[0]).toMatchObject({ used: 1, blocking: false });
  });

  it('account windows are shared by the keys of one account, per account', () => {
    const windows = [{ name: '60000', limit: 3, windowMs: 60_000, perAccount: true }];
    const t = at('2027-06-01T12:00:00Z');
    const decide = (subject: string, account: string) => limiter.decide({ subject, account, windows, cost: 1 }, t).allowed;
    expect([decide('a', 'acme'), decide('b', 'acme'), decide('a', 'acme'), decide('b', 'acme')]).toEqual([true, true, true, false]);
    expect(decide('c', 'globex')).toBe(true);
  });

  it('shadow windows and quotas count past their limit and never refuse; an enforced one still does', () => {
    const request: LimitRequest = {
      subject: 's',
      windows: [{ name: 'w', limit: 1, windowMs: 60_000, shadow: true }, { name: 'e', limit: 3, windowMs: 60_000 }],
      quota: { limit: 1, period: 'day', shadow: true },
      cost: 1,
    };
    const t = at('2027-06-01T12:00:00Z');
    const decisions = [1, 2, 3, 4].map(() => limiter.decide(request, t));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false]);
    expect(decisions[2].windows.map((w) => [w.used, w.blocking])).toEqual([
      [3, true],
      [3, false],
      [3, true],
    ]);
  });
});
