import type { Config, Tier } from '../config/schema';
import { parseDuration } from '../config/duration';
import type { ApiKeyRecord, KeyLimit } from '../keys/types';
import type { ConcurrencySpec, LimitRequest, QuotaSpec, WindowSpec } from './limiter';

type LimitLike = { requests: number; per: number; mode?: 'enforce' | 'shadow' };

function specs(limits: readonly LimitLike[], tier: Tier, namePrefix = '', perAccount = false): WindowSpec[] {
  return limits.map((l) => ({
    name: `${namePrefix}${l.per}`,
    limit: l.requests,
    windowMs: l.per,
    shadow: tier.mode === 'shadow' || l.mode === 'shadow',
    perAccount,
  }));
}

/** A key's own `limits` (replacing its tier's) as windows; same names as the tier's, so same counters. */
export function overrideWindows(limits: readonly KeyLimit[], tier: Tier): WindowSpec[] {
  return specs(limits.map((l) => ({ requests: l.requests, per: parseDuration(l.per)! })), tier);
}

/** A tier's own windows, counted per key across all routes (usage reports read the same counters). */
export function tierWindows(tier: Tier): WindowSpec[] {
  return specs(tier.limits, tier);
}

/** The windows shared by every key of one account. */
export function accountWindows(tier: Tier): WindowSpec[] {
  return specs(tier.account_limits ?? [], tier, '', true);
}

export function tierQuota(tier: Tier): QuotaSpec | undefined {
  const { quota } = tier;
  return quota && { limit: quota.requests, period: quota.per, shadow: tier.mode === 'shadow' || quota.mode === 'shadow' };
}

/** A tier's concurrency limit (plain number or { limit, mode }), with the configured lease. */
export function tierConcurrency(tier: Tier, leaseMs: number): ConcurrencySpec | undefined {
  const { concurrency } = tier;
  if (concurrency === undefined) return undefined;
  const { limit, mode } = typeof concurrency === 'number' ? { limit: concurrency, mode: undefined } : concurrency;
  return { limit, leaseMs, shadow: tier.mode === 'shadow' || mode === 'shadow' };
}

/** What one (tier, route) pair applies, built once per config. */
interface Entry {
  tier: Tier;
  /** Tier windows + route windows: a key without an account or override (today's path, no copy). */
  plain: readonly WindowSpec[];
  /** The same + account windows. */
  accounted: readonly WindowSpec[];
  route: readonly WindowSpec[];
  account: readonly WindowSpec[];
  quota?: QuotaSpec;
  concurrency?: ConcurrencySpec;
}

type Consumer = Pick<ApiKeyRecord, 'id' | 'tier' | 'account' | 'limits'>;

/**
 * Which limits apply to a request: the key's tier's windows (or the key's own `limits`), counted per
 * key across all routes; the route's extra windows for that tier, per key and route; the tier's
 * account windows when the key has an account; the tier's calendar quota, per key.
 */
export class RateLimitPlan {
  private readonly byTierAndRoute = new Map<string, Entry>();
  /**
   * Windows of keys with their own limits, built once per cached record and (tier, route) entry, with
   * and without the account's: the key cache hands out the same record (and `limits` array) until the
   * key changes, and a reload builds a new plan.
   */
  private readonly overridden = new WeakMap<readonly KeyLimit[], Map<Entry, { plain?: readonly WindowSpec[]; accounted?: readonly WindowSpec[] }>>();

  constructor(config: Config) {
    for (const [tierName, tier] of Object.entries(config.tiers)) {
      const own = tierWindows(tier);
      const concurrency = tierConcurrency(tier, config.rate_limiting.concurrency_lease);
      const account = accountWindows(tier);
      for (const route of config.routes) {
        const routeWindows = specs(route.limits[tierName] ?? [], tier, `${route.name}:`);
        const plain = [...own, ...routeWindows];
        this.byTierAndRoute.set(`${tierName}\n${route.name}`, {
          tier,
          plain,
          accounted: [...plain, ...account],
          route: routeWindows,
          account,
          quota: tierQuota(tier),
          concurrency,
        });
      }
    }
  }

  windows(tier: string, route: string): readonly WindowSpec[] {
    return this.byTierAndRoute.get(`${tier}\n${route}`)?.plain ?? [];
  }

  /** The limiter request for a key on a route, or null when nothing limits it (an unlimited tier). */
  request(consumer: Consumer, route: string, cost: number): LimitRequest | null {
    const entry = this.byTierAndRoute.get(`${consumer.tier}\n${route}`);
    if (!entry) return null;
    const account = consumer.account;
    let windows: readonly WindowSpec[];
    if (consumer.limits) windows = this.withOwnLimits(consumer.limits, entry, account !== undefined);
    else windows = account === undefined ? entry.plain : entry.accounted;
    if (windows.length === 0 && !entry.quota && !entry.concurrency) return null;
    // Only tiers with a concurrency limit carry the field: the others' requests keep their shape.
    if (entry.concurrency) return { subject: consumer.id, account, windows, quota: entry.quota, concurrency: entry.concurrency, cost };
    return { subject: consumer.id, account, windows, quota: entry.quota, cost };
  }

  private withOwnLimits(limits: readonly KeyLimit[], entry: Entry, accounted: boolean): readonly WindowSpec[] {
    let byEntry = this.overridden.get(limits);
    if (!byEntry) this.overridden.set(limits, (byEntry = new Map()));
    let built = byEntry.get(entry);
    if (!built) byEntry.set(entry, (built = {}));
    const variant = accounted ? 'accounted' : 'plain';
    return (built[variant] ??= [...overrideWindows(limits, entry.tier), ...entry.route, ...(accounted ? entry.account : [])]);
  }
}
