import { formatWindow } from '../config/duration';
import { GatewayError } from '../errors/envelope';
import type { LimitDecision, WindowState } from './limiter';

/**
 * The window the headers describe: on success the one with the fewest requests remaining; on a
 * refusal the blocking window with the longest wait.
 */
export function reportedWindow(decision: LimitDecision): WindowState {
  const candidates = decision.allowed ? decision.windows : decision.windows.filter((w) => w.blocking);
  return candidates.reduce((best, w) => {
    if (!decision.allowed) return w.resetMs > best.resetMs ? w : best;
    const [left, bestLeft] = [w.limit - w.used, best.limit - best.used];
    return left < bestLeft || (left === bestLeft && w.resetMs > best.resetMs) ? w : best;
  });
}

/** Reset as Unix seconds (rounded up, so it is never early) and the whole seconds until then. */
export function resetTimes(window: WindowState, nowMs: number): { resetSeconds: number; retryAfter: number } {
  const resetSeconds = Math.ceil(window.resetMs / 1000);
  return { resetSeconds, retryAfter: Math.max(1, Math.ceil((resetSeconds * 1000 - nowMs) / 1000)) };
}

/** "60s", "1h": a window's name in the IETF headers. */
function shortWindow(ms: number): string {
  return ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : ms % 60_000 === 0 ? `${ms / 60_000}m` : `${Math.ceil(ms / 1000)}s`;
}

/** X-RateLimit-* (and optionally the IETF draft's RateLimit-Policy / RateLimit) for a decision. */
export function rateLimitHeaders(decision: LimitDecision, ietf: boolean): Record<string, string> {
  const window = reportedWindow(decision);
  const remaining = Math.max(0, window.limit - window.used);
  const { resetSeconds, retryAfter } = resetTimes(window, decision.nowMs);
  const headers: Record<string, string> = {
    'x-ratelimit-limit': String(window.limit),
    'x-ratelimit-remaining': String(remaining),
    'x-ratelimit-reset': String(resetSeconds),
  };
  if (!decision.allowed) headers['retry-after'] = String(retryAfter);
  if (ietf) {
    headers['ratelimit-policy'] = decision.windows.map((w) => `"${shortWindow(w.windowMs)}";q=${w.limit};w=${Math.ceil(w.windowMs / 1000)}`).join(', ');
    headers['ratelimit'] = `"${shortWindow(window.windowMs)}";r=${remaining};t=${retryAfter}`;
  }
  return headers;
}

/** The seed contract's 429: message, details {limit, window, retry_after}. Headers travel separately. */
export function rateLimitExceeded(decision: LimitDecision): GatewayError {
  const window = reportedWindow(decision);
  const { retryAfter } = resetTimes(window, decision.nowMs);
  return new GatewayError('rate_limit_exceeded', {
    message: `API rate limit exceeded. Please wait ${retryAfter} seconds before retrying.`,
    details: { limit: window.limit, window: formatWindow(window.windowMs), retry_after: retryAfter },
  });
}
