import { formatWindow } from '../config/duration';
import { GatewayError } from '../errors/envelope';
import { calendarWindowName } from './calendar';
import type { LimitDecision, WindowState } from './limiter';

/**
 * The window the headers describe: on success the one with the fewest requests remaining; on a
 * refusal the blocking window with the longest wait. Shadow windows never speak; undefined when
 * every window is a shadow one.
 */
export function reportedWindow(decision: LimitDecision): WindowState | undefined {
  let best: WindowState | undefined;
  for (const w of decision.windows) {
    if (w.shadow || (!decision.allowed && !w.blocking)) continue;
    if (best === undefined || (decision.allowed ? fewerLeft(w, best) : w.resetMs > best.resetMs)) best = w;
  }
  return best;
}

/** Fewer requests remaining, or as many but a later reset. */
function fewerLeft(w: WindowState, best: WindowState): boolean {
  const left = w.limit - w.used;
  const bestLeft = best.limit - best.used;
  return left < bestLeft || (left === bestLeft && w.resetMs > best.resetMs);
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

/** What a 429 body calls a window: "1 minute", or "calendar month" for a quota. */
function windowName(window: WindowState): string {
  return window.calendar ? calendarWindowName(window.calendar) : formatWindow(window.windowMs);
}

const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** X-RateLimit-* (and optionally the IETF draft's RateLimit-Policy / RateLimit) for a decision. */
export function rateLimitHeaders(decision: LimitDecision, ietf: boolean): Record<string, string> {
  const window = reportedWindow(decision);
  if (!window) return NO_HEADERS; // only shadow windows
  const remaining = Math.max(0, window.limit - window.used);
  const { resetSeconds, retryAfter } = resetTimes(window, decision.nowMs);
  const headers: Record<string, string> = {
    'x-ratelimit-limit': String(window.limit),
    'x-ratelimit-remaining': String(remaining),
    'x-ratelimit-reset': String(resetSeconds),
  };
  if (!decision.allowed) headers['retry-after'] = String(retryAfter);
  if (ietf) {
    headers['ratelimit-policy'] = decision.windows.filter((w) => !w.shadow).map((w) => `"${shortWindow(w.windowMs)}";q=${w.limit};w=${Math.ceil(w.windowMs / 1000)}`).join(', ');
    headers['ratelimit'] = `"${shortWindow(window.windowMs)}";r=${remaining};t=${retryAfter}`;
  }
  return headers;
}

/** The seed contract's 429: message, details {limit, window, retry_after}. Headers travel separately. */
export function rateLimitExceeded(decision: LimitDecision): GatewayError {
  const window = reportedWindow(decision)!; // a refusal always has an enforced blocking window
  const { retryAfter } = resetTimes(window, decision.nowMs);
  return new GatewayError('rate_limit_exceeded', {
    message: `API rate limit exceeded. Please wait ${retryAfter} seconds before retrying.`,
    details: { limit: window.limit, window: windowName(window), retry_after: retryAfter },
  });
}
