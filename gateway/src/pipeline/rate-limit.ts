import { GatewayError, serviceUnavailable } from '../errors/envelope';
import { concurrencyRefusalsBy, quotaRefusalsBy, rateLimitDecisionsBy } from '../metrics/registry';
import { calendarWindowName } from '../ratelimit/calendar';
import { formatWindow } from '../config/duration';
import { rateLimitExceeded, rateLimitHeaders } from '../ratelimit/headers';
import type { LimitDecision, LimitRequest } from '../ratelimit/limiter';
import { LimiterUnavailableError } from '../ratelimit/resilient-limiter';
import { countedCaller, type RequestContext } from './context';

/**
 * Checks and counts every limit of the request in one call: the key's windows (its own limits or its
 * tier's), this route's windows for the tier, the account's windows and the calendar quota; an
 * anonymous caller's, of the anonymous tier, under its address's subject. Runs after
 * authorization, so only real customers are counted; refused requests are not counted.
 */
export function rateLimit(ctx: RequestContext): Promise<void> | void {
  // An anonymous caller is limited as a key of the anonymous tier would be, under its address's subject.
  const limited = countedCaller(ctx);
  const route = ctx.route!.route;
  const request = ctx.runtime.rateLimitPlan.request(limited, route.name, route.cost);
  if (request === null) return; // an unlimited tier
  // One reaction to the decision (not an async function: this runs on every request).
  return ctx.runtime.limiter.check(request).then(
    (decision) => applyDecision(ctx, limited.tier, request, decision),
    (err: unknown) => {
      if (!(err instanceof LimiterUnavailableError)) throw err;
      throw serviceUnavailable({ cause: err });
    },
  );
}

/** Sets the rate-limit headers, and refuses the request (429) when a limit in force is reached. */
function applyDecision(ctx: RequestContext, tier: string, request: LimitRequest, decision: LimitDecision): void {
  const { runtime } = ctx;
  if (decision.release) releaseWhenAnswered(ctx, decision.release);
  Object.assign(ctx.responseHeaders, rateLimitHeaders(decision, runtime.config.rate_limiting.ietf_headers));
  if (!decision.allowed) {
    rateLimitDecisionsBy(tier, 'limited').inc();
    const slots = decision.concurrency;
    // A window's refusal says when to come back; only when no window refused is it the slots.
    if (slots && slots.blocking && !slots.shadow && !decision.windows.some((w) => w.blocking && !w.shadow)) {
      concurrencyRefusalsBy(tier).inc();
      throw tooManyConcurrentRequests(slots.limit);
    }
    const quota = request.quota && decision.windows[decision.windows.length - 1];
    if (quota && quota.blocking && !quota.shadow) quotaRefusalsBy(tier, quota.calendar!).inc();
    throw rateLimitExceeded(decision);
  }
  const shadowRefusals = shadowBlocking(decision);
  if (shadowRefusals === undefined) {
    rateLimitDecisionsBy(tier, 'allowed').inc();
    return;
  }
  // Admitted, but a shadow limit would have refused it: what enforcing that limit would do.
  rateLimitDecisionsBy(tier, 'shadow_limited').inc();
  runtime.log.info(
    { key_id: ctx.consumer?.id, client: ctx.consumer ? undefined : ctx.clientAddress, tier, account: ctx.consumer?.account, windows: shadowRefusals, route: ctx.route!.route.name },
    'shadow rate limit: this request would have been refused',
  );
}

/** The names of the shadow windows (and shadow concurrency limit) that would have refused an admitted request, or undefined. */
function shadowBlocking(decision: LimitDecision): string[] | undefined {
  let names: string[] | undefined;
  for (const w of decision.windows) {
    if (w.shadow && w.blocking) (names ??= []).push(w.calendar ? calendarWindowName(w.calendar) : formatWindow(w.windowMs));
  }
  if (decision.concurrency?.shadow && decision.concurrency.blocking) (names ??= []).push('concurrency');
  return names;
}

/**
 * Gives the request's slot back when its answer ends, whatever the way: the response finished or
 * failed, the client went away, or the upgraded connection (a WebSocket) closed. An answer that ends
 * normally gives it back first, before its last bytes (ctx.giveBackSlot); the close event is the net
 * for every other way.
 */
function releaseWhenAnswered(ctx: RequestContext, release: () => void | Promise<void>): void {
  const stream = ctx.reply.kind === 'http' ? ctx.reply.res : ctx.reply.socket;
  // The client may have gone while the limiter decided: its close event has passed already.
  if (stream.destroyed || ctx.req.socket.destroyed) {
    void release();
    return;
  }
  stream.once('close', () => void release());
  ctx.giveBackSlot = release;
}

/** 429 when the key has as many requests in flight as its tier allows; slots free as answers end. */
function tooManyConcurrentRequests(limit: number): GatewayError {
  return new GatewayError('too_many_concurrent_requests', {
    message: `Too many requests in flight for this API key (at most ${limit} at once). Retry when one of them has finished.`,
    details: { limit },
    headers: { 'retry-after': '1' },
  });
}
