import { serviceUnavailable } from '../errors/envelope';
import { rateLimitDecisionsBy } from '../metrics/registry';
import { rateLimitExceeded, rateLimitHeaders } from '../ratelimit/headers';
import { LimiterUnavailableError } from '../ratelimit/resilient-limiter';
import type { RequestContext } from './context';

/**
 * Checks and counts every window of the key's tier (and of this route for that tier) in one call;
 * an anonymous caller's, of the anonymous tier, under its address's subject.
 * Runs after authorization, so only real customers are counted; refused requests are not counted.
 */
export async function rateLimit(ctx: RequestContext): Promise<void> {
  const { runtime, consumer } = ctx;
  const tier = consumer ? consumer.tier : ctx.anonymous!.tier;
  const route = ctx.route!.route;
  const windows = runtime.rateLimitPlan.windows(tier, route.name);
  if (windows.length === 0) return; // an unlimited tier

  let decision;
  try {
    decision = await runtime.limiter.check({ subject: consumer ? consumer.id : ctx.anonymous!.subject, windows, cost: route.cost });
  } catch (err) {
    if (!(err instanceof LimiterUnavailableError)) throw err;
    throw serviceUnavailable({ cause: err });
  }
  Object.assign(ctx.responseHeaders, rateLimitHeaders(decision, runtime.config.rate_limiting.ietf_headers));
  rateLimitDecisionsBy(tier, decision.allowed ? 'allowed' : 'limited').inc();
  if (!decision.allowed) throw rateLimitExceeded(decision);
}
