import type { Config, Tier } from '../config/schema';
import type { WindowSpec } from './limiter';

/** A tier's own windows, counted per key across all routes (usage reports read the same counters). */
export function tierWindows(tier: Tier): WindowSpec[] {
  return tier.limits.map((l) => ({ name: String(l.per), limit: l.requests, windowMs: l.per }));
}

/**
 * Which windows apply to a (tier, route) pair: the tier's own, counted per key across all routes, plus
 * the route's extra windows for that tier, counted per key and route. Built once per config.
 */
export class RateLimitPlan {
  private readonly byTierAndRoute = new Map<string, readonly WindowSpec[]>();

  constructor(config: Config) {
    for (const [tierName, tier] of Object.entries(config.tiers)) {
      const ownWindows = tierWindows(tier);
      for (const route of config.routes) {
        const routeWindows = (route.limits[tierName] ?? []).map((l) => ({
          name: `${route.name}:${l.per}`,
          limit: l.requests,
          windowMs: l.per,
        }));
        this.byTierAndRoute.set(`${tierName}\n${route.name}`, [...ownWindows, ...routeWindows]);
      }
    }
  }

  windows(tier: string, route: string): readonly WindowSpec[] {
    return this.byTierAndRoute.get(`${tier}\n${route}`) ?? [];
  }
}
